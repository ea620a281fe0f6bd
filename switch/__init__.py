"""The switch: who may call whom, the core that decides and charges calls, and the media workers.

Rooms, bottom up (a room imports only rooms listed before it, and `worker` never imports `control`):
- `rules`: pure decisions and state machines: call policy, the billing session and its charging
  steps, PINs and PIN sessions, schedules, phone numbers, kiosk source networks. No I/O.
- `wire`: the contract between the core and its workers: the AMP commands and who may speak them.
- `provisioning`: who may call whom, written to the database (kiosks, inmates, contacts, blocks,
  schedules, routes, prepaid phone accounts); used by the CLI, the HTTP API and the families.
- `control`: the call-control core: reads facts, decides with `rules`, settles money through the
  ledger, and serves the workers over `wire`.
- `processes`: the node's worker processes: the supervisor that keeps them running, the SIP
  front door that spreads calls over them, their tie to the parent, leftovers of a crashed run.
- `worker`: one media worker process (the only pjsua2 user).
- `tools`: simulated SIP peers (kiosk, called party) for the demo and the tests.

The node is assembled one floor up, in `ops.node`; `ics demo` and seeding live in `ops` too.
"""
