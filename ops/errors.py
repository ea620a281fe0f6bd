"""The operator tools' error family: everything `ops` raises for a person to read is an `OpsError`.

As the other packages have theirs (ledger.errors, switch.errors, families.errors), an OpsError
says `what` went wrong, `where` (the file, key, command or step) and the offending `value`;
``str(e)`` is the line `ics` prints. Kinds that callers caught as a built-in before (SeedError
and EdgeError as ValueError) still derive from it. ops.cli turns each kind into its exit code.
Its shape is ledger.errors.EngineError; every module of ops may raise its members.
"""

from __future__ import annotations

from ledger.errors import EngineError

__all__ = ["OpsError"]


class OpsError(EngineError):
    """Base of this package's errors (ledger.errors.EngineError gives the fields)."""
