"""The IVR's error family: every refusal of the ivr package is an `IvrError`.

As asyncpg has its families, each package of the engine has its own; an IvrError says `what`
went wrong (the condition, in words), `where` (the field, setting, file or prompt) and the
offending `value`, so a boundary (a log line, the CLI, the worker) shows them without parsing
the message; ``str(e)`` is the sentence for people. Each kind also derives from the built-in
its callers caught before the family existed (ValueError, KeyError), so none of them breaks.
"""

from __future__ import annotations

from ledger.errors import EngineError

__all__ = ["IvrError"]


class IvrError(EngineError):
    """Base of this package's errors (ledger.errors.EngineError gives the fields)."""
