"""The families' portal at /portal: server-rendered pages over the family API's operations."""
from __future__ import annotations

from typing import Any

from web.dispatch import Services
from web.pages.site import PageSite
from web.pages.static import StaticFiles
from web.portal.app import BASE, portal_site

__all__ = ["mount_portal", "BASE"]


def mount_portal(site: Any, services: Services, *, secure_cookies: bool) -> PageSite | None:
    """Serve the portal at /portal (and the shared static files) when the node has families."""
    if services.families is None:
        return None
    pages = portal_site(services, secure_cookies=secure_cookies,
                        body_bytes_max=services.settings.body_bytes_max)
    site.resource.putChild(b"portal", pages)
    if b"static" not in site.resource.children:
        site.resource.putChild(b"static", StaticFiles())
    return pages
