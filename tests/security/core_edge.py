"""What the core's hostile tests share: the switch tests' reactor fixtures and rig, a core with
metrics, and helpers to provision kiosks and read the audit trail. Imported by test_core_*.py as
tests.security.core_edge (fixtures imported into a test module are fixtures of that module)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

SWITCH_TESTS = Path(__file__).resolve().parent.parent / "switch"
if str(SWITCH_TESTS) not in sys.path:
    sys.path.insert(0, str(SWITCH_TESTS))       # rig, standin_worker, as tests/switch names them

from tests.switch.conftest import eventually, reactor, settle  # noqa: E402,F401  (fixtures)

from ops.metrics import CoreMetrics  # noqa: E402
from rig import close_rig, make_rig  # noqa: E402
from switch.provisioning.directory import add_kiosk  # noqa: E402


@pytest.fixture
async def rig(reactor, pg_dsn):
    r = await make_rig(reactor, pg_dsn)
    r.metrics = CoreMetrics()
    r.core.observer = r.metrics.observe
    yield r
    await r.verify()
    await close_rig(r)


async def set_kiosk(rig, kiosk_id: str, *, sources=None, trusted: bool = False, unit="A") -> None:
    async with rig.pool.acquire() as c:
        await add_kiosk(c, kiosk_id, "riverside", unit=unit, sources=sources, trusted=trusted)


async def audit(rig, event: str | None = None) -> list[dict]:
    async with rig.pool.acquire() as c:
        rows = await c.fetch("SELECT * FROM edge_audit WHERE $1::text IS NULL OR event = $1 "
                             "ORDER BY id", event)
    return [dict(r) for r in rows]


async def pin_outcomes(rig) -> list[str]:
    async with rig.pool.acquire() as c:
        return [r["outcome"] for r in await c.fetch("SELECT outcome FROM pin_attempt ORDER BY id")]


def metric(rig, name: str, labels: dict | None = None) -> float:
    value = rig.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value
