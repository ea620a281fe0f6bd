"""The API's operations, one module per area; importing this package registers them all."""
from web.operations import Registry

REGISTRY = Registry()

from web.endpoints import (operators, audit, cdrs, accounts, directory,  # noqa: E402,F401
                           calls, reports, tariffs)

__all__ = ["REGISTRY"]
