"""The media worker: runs kiosk calls on one pjsua2 endpoint and reports them to the core.

Modules: `media` (the only pjsua2 user), `call` (one switched call: runs the `ivr.flows` on its
legs, dials, bridges, records, keeps the grant), `grant` (talk-time state machine, pure), `link`
(AMP to the core), `prompts` (catalog WAVs, tones for anything else), `service` (admission and
the call table) and `__main__` (the command line the supervisor runs).
"""
