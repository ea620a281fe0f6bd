"""The media worker: runs kiosk calls on one pjsua2 endpoint and reports them to the core.

Modules: `media` (the only pjsua2 user), `call` (one switched call: flows, dialling, bridge,
recording, grant), `grant` (talk-time state machine, pure), `flows` (IVR vocabulary and the basic
flows), `link` (AMP to the core), `prompts`, `service` (admission and the call table) and
`__main__` (the command line the supervisor runs).
"""
