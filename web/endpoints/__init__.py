"""The API's operations, one module per area; importing this package registers them all."""
from web.operations import Registry

REGISTRY = Registry()

from web.endpoints import (operators, audit, cdrs, accounts, directory,  # noqa: E402,F401
                           calls, reports, tariffs)
from web.endpoints import family_account, family_money, family_contacts  # noqa: E402,F401
from web.endpoints import family_proof  # noqa: E402,F401

__all__ = ["REGISTRY"]
