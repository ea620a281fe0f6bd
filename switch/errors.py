"""The switch's error family: every refusal the switch raises is a `SwitchError`.

As asyncpg has its families, each package of the engine has its own; a SwitchError says `what`
went wrong (the condition, in words), `where` (the field, kiosk or call) and the offending
`value`, so a boundary (the CLI, an HTTP problem, an AMP answer, a log line) shows them without
parsing the message; ``str(e)`` is the sentence for people. The wire's errors
(switch.wire.protocol.WireError) are of this family; kinds that callers caught as a built-in before
(ValueError, LookupError) still derive from it. This module imports only the shape all families
share (ledger.errors, itself pure), so the pure modules (policy, pin, schedule, numbers) may
raise its members.
"""

from __future__ import annotations

from ledger.errors import EngineError

__all__ = ["SwitchError"]


class SwitchError(EngineError):
    """Base of this package's errors (ledger.errors.EngineError gives the fields)."""
