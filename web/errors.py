"""The web layer's error family: every refusal web raises itself is a `WebError`.

As asyncpg has its families, each package of the engine has its own; a WebError says `what`
went wrong (the condition, in words), `where` (the field) and the offending `value`; ``str(e)``
is the sentence for people. The endpoints turn them (and the lower floors' families) into
problem bodies (web.problems); `web.problems.ApiProblem` is that rendering, not a refusal of its
own. Kinds that callers caught as a built-in before (ValueError, LookupError) still derive from
it. Its shape is ledger.errors.EngineError.
"""

from __future__ import annotations

from ledger.errors import EngineError

__all__ = ["WebError"]


class WebError(EngineError):
    """Base of this package's errors (ledger.errors.EngineError gives the fields)."""
