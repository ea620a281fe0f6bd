"""Flow control for streamed responses: a producer the transport pauses while its buffer is full.

The API's streamed exports (web.dispatch) and the pages' downloads (web.pages.site) register one
with the request and wait on `resumed` between chunks, so a slow client slows the database's COPY
instead of the node buffering the whole export in memory.
"""
from __future__ import annotations

import asyncio

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer  # type: ignore[import-untyped]

__all__ = ["Backpressure"]


@implementer(IPushProducer)
class Backpressure:
    """Pauses a streaming writer while the transport's buffer is full; `stopped` once the
    client is gone (the writer then stops producing)."""

    def __init__(self) -> None:
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.stopped = False

    def pauseProducing(self) -> None:
        self.resumed.clear()

    def resumeProducing(self) -> None:
        self.resumed.set()

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumed.set()
