"""The worker link cuts whole AMP boxes from what it reads in one loop (WorkerLink.dataReceived);
any stream, cut into any chunks, gives the boxes AMP's own parser gives, in order, and leaves it
in the same state: boxes cut short by a chunk, empty boxes, repeated keys, 0-length values, keys
of 255 bytes, and a key longer than AMP allows (the connection is dropped at it)."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.protocols import amp

from switch.control.service import WorkerLink


class Transport:
    def __init__(self) -> None:
        self.lost = 0

    def write(self, data) -> None:
        pass

    def loseConnection(self) -> None:
        self.lost += 1

    def getPeer(self):
        return "peer"

    def getHost(self):
        return "host"


class Generic(amp.AMP):
    def __init__(self) -> None:
        super().__init__()
        self.boxes: list[dict] = []

    def ampBoxReceived(self, box):
        self.boxes.append(dict(box))


class Link(WorkerLink):
    def __init__(self) -> None:
        super().__init__(None, None)
        self.boxes: list[dict] = []

    def ampBoxReceived(self, box):
        self.boxes.append(dict(box))


def encoded(items) -> bytes:
    out = b""
    for key, value in items:
        out += len(key).to_bytes(2) + key + len(value).to_bytes(2) + value
    return out + b"\x00\x00"


KEYS = st.one_of(st.sampled_from([b"_command", b"_ask", b"call_id", b"period", b"x" * 255]),
                 st.binary(min_size=1, max_size=12))
BOXES = st.lists(st.lists(st.tuples(KEYS, st.binary(max_size=40)), max_size=6), max_size=8)


@settings(max_examples=300, deadline=None)
@given(BOXES, st.booleans(), st.lists(st.integers(1, 60), max_size=30), st.data())
def test_any_stream_in_any_chunks_gives_the_boxes_amp_gives(boxes, long_key, cuts, data):
    stream = b"".join(encoded(b) for b in boxes)
    if long_key:         # a key AMP refuses somewhere in the stream: it drops the connection
        at = data.draw(st.integers(0, len(boxes)))
        stream = b"".join(encoded(b) for b in boxes[:at]) + encoded([(b"k" * 256, b"v")]) + \
            b"".join(encoded(b) for b in boxes[at:])
    chunks, rest = [], stream
    for n in cuts:
        chunks.append(rest[:n])
        rest = rest[n:]
    chunks.append(rest)
    ways = []
    for parser in (Generic(), Link()):
        parser.makeConnection(Transport())
        for chunk in chunks:
            if parser.transport.lost:
                break               # a dropped connection reads nothing more
            parser.dataReceived(chunk)
        # (what is left unread starts at _compatibilityOffset of the buffer kept)
        ways.append((parser.boxes, parser.transport.lost,
                     parser._unprocessed[parser._compatibilityOffset:], parser.state,
                     parser.MAX_LENGTH))
    assert ways[0] == ways[1]
    if not long_key:
        assert ways[1][0] == [dict(b) for b in boxes]


def test_whole_boxes_are_cut_without_amp_s_parser(monkeypatch):
    calls = []
    monkeypatch.setattr(amp.BinaryBoxProtocol, "stringReceived",
                        lambda self, s: calls.append(s))
    link = Link()
    link.makeConnection(Transport())
    link.dataReceived(encoded([(b"_command", b"Continue"), (b"_ask", b"1")]) * 3)
    assert len(link.boxes) == 3 and calls == []
