"""The switch's pure rules: decisions and state machines over facts read elsewhere.

Call policy (`policy`), a call's billing session and its charging steps (`session`), PIN storage
and lockout (`pin`), PIN sessions (`pin_session`), calling schedules (`schedule`), phone numbers
(`numbers`) and a kiosk's source networks (`kiosk_source`). They do no I/O and import neither
twisted, asyncpg nor pjsua2, so they are tested exhaustively without a database or a reactor
(tests/house checks it); the core reads the facts first, then asks them.
"""
