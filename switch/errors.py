"""The switch's error family: every refusal the switch raises is a `SwitchError`.

As asyncpg has its families, each package of the engine has its own; a SwitchError says `what`
went wrong (the condition, in words), `where` (the field, kiosk or call) and the offending
`value`, so a boundary (the CLI, an HTTP problem, an AMP answer, a log line) shows them without
parsing the message; ``str(e)`` is the sentence for people. The wire's errors
(switch.wire.protocol.WireError) are of this family; kinds that callers caught as a built-in before
(ValueError, LookupError) still derive from it. This module imports nothing, so the pure
modules (policy, pin, schedule, numbers) may raise its members.
"""

from __future__ import annotations

__all__ = ["SwitchError"]


class SwitchError(Exception):
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
