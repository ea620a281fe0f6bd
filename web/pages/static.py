"""The pages' static files (web/static): a fixed list, read once, served with long caching and the
same no-sniff rule as the pages. No directory listing, no path from the request touches disk."""
from __future__ import annotations

from importlib import resources
from typing import Any

from twisted.web import resource

__all__ = ["StaticFiles"]

_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
          ".ico": "image/x-icon"}


class StaticFiles(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # twisted's Resource is untyped
        self.files: dict[bytes, tuple[str, bytes]] = {}
        root = resources.files("web") / "static"
        for entry in root.iterdir():
            ext = "." + entry.name.rsplit(".", 1)[-1]
            if ext in _TYPES:
                self.files[entry.name.encode()] = (_TYPES[ext], entry.read_bytes())

    def render_GET(self, request: Any) -> bytes:
        found = self.files.get(b"/".join(request.postpath)) if len(request.postpath) == 1 else None
        request.setHeader(b"x-content-type-options", b"nosniff")
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found"
        request.setHeader(b"content-type", found[0].encode())
        request.setHeader(b"cache-control", b"public, max-age=3600")
        return found[1]
