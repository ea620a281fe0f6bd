"""The operators' console at /console: server-rendered pages over the API's operations."""
from __future__ import annotations

from typing import Any

from web import sessions
from web.console.app import COOKIE_NAME, ConsoleSettings, console_site
from web.dispatch import Services
from web.pages.site import PageSite
from web.pages.static import StaticFiles

__all__ = ["ConsoleSettings", "mount_console", "COOKIE_NAME"]


def mount_console(site: Any, services: Services, settings: ConsoleSettings | None = None
                  ) -> PageSite:
    """Serve the console at /console and the shared static files at /static on `site`."""
    if settings is None:
        settings = ConsoleSettings(secure_cookies=True,
                                   body_bytes_max=services.settings.body_bytes_max)
    pages = console_site(services, settings)
    site.resource.putChild(b"console", pages)
    if b"static" not in site.resource.children:
        site.resource.putChild(b"static", StaticFiles())
    return pages


def secure_cookies_for(http_host: str, *, tls: bool = False) -> bool:
    return sessions.secure_default(http_host, tls=tls)
