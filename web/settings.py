"""`[api]`: the operations API's settings. The node's config section is this class (ops.config
reads the operator's file into it), so its defaults are the only ones. A plain dataclass: the
config loads it without importing the API."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ApiSettings"]


@dataclass(frozen=True)
class ApiSettings:
    body_bytes_max: int = 1_048_576        # a larger request body is refused (413), not buffered
    adjustment_approval_micros: int = 100_000_000   # larger adjustments wait for a 2nd operator
