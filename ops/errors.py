"""The operator tools' error family: everything `ops` raises for a person to read is an `OpsError`.

As the other packages have theirs (ledger.errors, switch.errors, families.errors), an OpsError
says `what` went wrong, `where` (the file, key, command or step) and the offending `value`;
``str(e)`` is the line `ics` prints. Kinds that callers caught as a built-in before (SeedError
and EdgeError as ValueError) still derive from it. ops.cli turns each kind into its exit code.
This module imports nothing, so every module of ops may raise its members.
"""

from __future__ import annotations

__all__ = ["OpsError"]


class OpsError(Exception):
    what: str = ""
    where: str | None = None
    value: object = None

    def __init__(self, message: str = "", *, what: str | None = None, where: str | None = None,
                 value: object = None) -> None:
        super().__init__(message)
        self.what = what if what is not None else message
        if where is not None:
            self.where = where
        if value is not None:
            self.value = value
