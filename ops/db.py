"""Where the database is: a configured DSN, or the embedded server under the data directory."""
from __future__ import annotations

from typing import Any

import asyncpg

from ops.config import Config
from ops.embedded import EmbeddedServer

__all__ = ["embedded_server", "resolve_dsn", "connect", "create_pool"]


def embedded_server(cfg: Config) -> EmbeddedServer:
    return EmbeddedServer(cfg.data_dir, fsync=cfg.database.embedded_fsync)


def resolve_dsn(cfg: Config, *, start: bool = True) -> str:
    """The DSN to use; with none configured, the embedded server's (started if ``start``)."""
    if cfg.database.url:
        return cfg.database.url
    server = embedded_server(cfg)
    return server.start() if start else server.url


def _server_settings(cfg: Config) -> dict[str, str]:
    return {"statement_timeout": str(cfg.database.statement_timeout_ms),
            "application_name": "ics", "timezone": "UTC"}


async def connect(cfg: Config, dsn: str | None = None) -> asyncpg.Connection:
    return await asyncpg.connect(dsn or resolve_dsn(cfg), server_settings=_server_settings(cfg))


async def create_pool(cfg: Config, dsn: str | None = None, **kwargs: Any) -> asyncpg.Pool:
    kwargs.setdefault("min_size", cfg.database.pool_min)
    kwargs.setdefault("max_size", cfg.database.pool_max)
    return await asyncpg.create_pool(dsn or resolve_dsn(cfg),
                                     server_settings=_server_settings(cfg), **kwargs)
