"""Call control: the core that authorizes calls and settles their money, and its network face.

`core` reads what a decision needs, decides with `switch.rules` and carries the step out through
the ledger; `group_commit` batches many calls' Accepts and Continues (and, apart, their Ends) into
one ledger batch each; `tariffs` prices with rating's one pricing definition; `service` serves the
workers (AMP) and /metrics, /health.
The core never touches media; workers reach it only through `switch.wire`.
"""
