"""Who may speak AMP to the core: only worker processes this node's supervisor started.

The supervisor gives each worker process a fresh random key at spawn, in its environment
(`KEY_ENV`, never argv, which any local user can read in /proc). On each connection the worker asks
for a `Challenge` nonce, then says `Hello` with a proof: HMAC-SHA256 under its key of the nonce and
every Hello argument. A replayed Hello fails (the nonce is single-use and per connection), a
process without the key cannot make one, and an orphan of an earlier spawn holds a key that was
replaced. Until Hello is accepted a connection can call nothing else.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

from twisted.internet import defer

from switch.errors import SwitchError
from switch.wire import protocol as wire

__all__ = ["KEY_ENV", "KEY_BYTES", "NONCE_BYTES", "Credentials", "new_key", "hello_proof",
           "proof_ok", "key_from_environ", "derived_key", "node_secret", "say_hello", "SECRET_FILE",
           "SecretFileError"]

KEY_ENV = "ICS_WORKER_KEY"
KEY_BYTES = 32
NONCE_BYTES = 32
_DOMAIN = b"ics-amp-hello-v1"
SECRET_FILE = "amp.secret"      # in the node's data_dir: the key root of externally run workers


class SecretFileError(SwitchError):
    """The node secret file is unusable (unreadable, malformed, or readable by others)."""


@dataclass(frozen=True)
class Credentials:
    """What the core expects of a worker id: its key, and where the supervisor started it
    (None: not pinned, for workers a registry admits without a supervisor)."""
    key: bytes
    sip_port: int | None = None
    pid: int | None = None


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def derived_key(secret: bytes, worker_id: str) -> bytes:
    """A worker's key under a node secret (workers run without a supervisor: tests, tools)."""
    return hmac.new(secret, b"worker\0" + worker_id.encode(), hashlib.sha256).digest()


def node_secret(path) -> bytes:
    """The node secret at `path`, created (0600) if missing. Workers that the supervisor does not
    start (workers = 0, run by another service manager) prove `derived_key(secret, id)`; give it
    only to them. A file that others can read is refused: anyone reading it could be a worker."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
    st = os.stat(path)
    if st.st_mode & 0o077:
        raise SecretFileError(f"{path}: readable by group or others (mode "
                              f"{st.st_mode & 0o777:o}); chmod 600 it",
                              what="readable by group or others", where=str(path),
                              value=oct(st.st_mode & 0o777))
    try:
        with open(path) as f:
            secret = bytes.fromhex(f.read().strip())
    except (OSError, ValueError) as e:
        raise SecretFileError(f"{path}: not a hex secret: {e}", what="not a hex secret",
                              where=str(path)) from None
    if len(secret) < 16:
        raise SecretFileError(f"{path}: secret too short ({len(secret)} bytes, want >= 16)",
                              what="secret too short", where=str(path), value=len(secret))
    return secret


def hello_proof(key: bytes, nonce: bytes, *, worker_id: str, capacity: int, sip_port: int,
                pid: int) -> bytes:
    message = b"\0".join((_DOMAIN, nonce, worker_id.encode(), str(capacity).encode(),
                          str(sip_port).encode(), str(pid).encode()))
    return hmac.new(key, message, hashlib.sha256).digest()


def proof_ok(key: bytes, nonce: bytes, proof: bytes | None, **hello) -> bool:
    if not proof or not nonce:
        return False
    return hmac.compare_digest(hello_proof(key, nonce, **hello), proof)


def key_from_environ(environ: MutableMapping[str, str] = os.environ) -> bytes | None:
    """The worker's key, removed from the environment so nothing the worker starts inherits it."""
    text = environ.pop(KEY_ENV, None)
    if not text:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None


def say_hello(call: Callable[..., defer.Deferred], key: bytes | None, *, worker_id: str,
              capacity: int, sip_port: int, pid: int) -> defer.Deferred:
    """Challenge, then Hello with its proof; `call(command, **kw)` sends one command."""
    hello = dict(worker_id=worker_id, capacity=capacity, sip_port=sip_port, pid=pid)

    def greet(answer):
        proof = hello_proof(key or b"", answer["nonce"], **hello)
        return call(wire.Hello, proof=proof, **hello)
    return call(wire.Challenge).addCallback(greet)
