"""The web layer's error family: every refusal web raises itself is a `WebError`.

As asyncpg has its families, each package of the engine has its own; a WebError says `what`
went wrong (the condition, in words), `where` (the field) and the offending `value`; ``str(e)``
is the sentence for people. The endpoints turn them (and the lower floors' families) into
problem bodies (web.problems); `web.problems.ApiProblem` is that rendering, not a refusal of its
own. Kinds that callers caught as a built-in before (ValueError, LookupError) still derive from
it. This module imports nothing.
"""

from __future__ import annotations

__all__ = ["WebError"]


class WebError(Exception):
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
