"""An HTTP request that stops buffering its body past a limit, so a huge upload costs no memory.

Twisted reads the whole body before a resource renders. This request counts the bytes as they
arrive and, past `body_bytes_max`, keeps none of them; the API then answers 413.
"""
from __future__ import annotations

from twisted.web import server

__all__ = ["BoundedRequest", "bounded_request_factory"]


class BoundedRequest(server.Request):
    body_bytes_max = 1 << 20

    def gotLength(self, length):
        self.body_too_large = length is not None and length > self.body_bytes_max
        self._body_bytes = 0
        super().gotLength(None if self.body_too_large else length)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_bytes = getattr(self, "_body_bytes", 0) + len(data)
        if self._body_bytes > self.body_bytes_max:
            self.body_too_large = True
        if getattr(self, "body_too_large", False):
            return
        super().handleContentChunk(data)


def bounded_request_factory(body_bytes_max: int) -> type[BoundedRequest]:
    return type("BoundedRequest", (BoundedRequest,), {"body_bytes_max": body_bytes_max})
