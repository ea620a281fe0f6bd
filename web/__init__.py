"""The operations HTTP API under /api/v1: operators and roles, the audit trail, CDRs, money.

`mount(site, services)` puts it on a node's HTTP site (next to /metrics and /health). Requests
and responses are pydantic models declared once in `web.endpoints`; the dispatcher validates
with them and `web.openapi` generates /api/v1/openapi.json from them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from web.dispatch import ApiResource, ApiSettings, Services

__all__ = ["ApiSettings", "Services", "mount", "api_document", "API_VERSION"]

API_VERSION = "1.0.0"


def __getattr__(name: str) -> Any:
    # Imported when first asked for, so that `web.settings` (read by the node's config) does
    # not load the API, its database driver and twisted.web.
    if name in ("ApiResource", "ApiSettings", "Services"):
        from web import dispatch
        return getattr(dispatch, name)
    raise AttributeError(f"module 'web' has no attribute {name!r}")


def api_document() -> dict:
    from web.endpoints import REGISTRY
    from web.openapi import document
    return document(REGISTRY, title="ICS operations API", version=API_VERSION)


def mount(site, services: "Services", *, observe=None, console=None) -> "ApiResource":
    """Serve the API at /api/v1 on `site`, whose root is a twisted.web Resource, and the
    operators' console at /console (`console`: its ConsoleSettings) and, with families, the
    families' portal at /portal."""
    from twisted.web import resource

    from web.dispatch import ApiResource
    from web.endpoints import REGISTRY
    from web.request import bounded_request_factory
    api = ApiResource(REGISTRY, services, document=api_document, observe=observe)
    v1 = resource.Resource()
    v1.putChild(b"v1", api)
    site.resource.putChild(b"api", v1)
    site.requestFactory = bounded_request_factory(services.settings.body_bytes_max)
    from web.console import mount_console
    pages = mount_console(site, services, console)
    from web.portal import mount_portal
    mount_portal(site, services, secure_cookies=pages.secure_cookies)
    return api
