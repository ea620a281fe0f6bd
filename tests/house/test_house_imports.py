"""The house's import rules: floors only import downward, and the pure modules import no I/O.

Floors, bottom-up: ledger, rating, ivr; switch, families; web; ops. A module may import a module
of its own floor or a lower one. Today's exceptions are listed by name below; the lists may only
shrink (a test fails when an entry is no longer needed, so it gets removed).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = {"ledger": 0, "rating": 0, "ivr": 0, "switch": 1, "families": 1, "web": 2, "ops": 3}

# (importing module, imported package): upward imports that exist today. May only shrink.
UPWARD_EXEMPT: set[tuple[str, str]] = set()

# The switch's rooms (see switch/__init__.py): what each may import of the others. `settings`
# is the switch's own settings, which every room may read.
SWITCH_ROOMS = {
    "errors": set(),        # the switch's error family: every room may raise its members
    "rules": set(),
    "wire": set(),
    "settings": set(),
    "provisioning": {"rules"},
    "control": {"rules", "wire", "provisioning", "settings"},
    "processes": {"wire", "settings"},
    "worker": {"wire", "processes", "settings"},
    "tools": {"worker"},
}

# Pure modules: decisions without I/O. Importing one loads none of these packages.
PURE = ("switch.rules.policy", "switch.rules.session", "switch.rules.pin",
        "switch.rules.pin_session", "switch.rules.schedule", "switch.rules.numbers",
        "switch.rules.kiosk_source", "rating.pricing", "ivr.flows", "ivr.flows.inmate",
        "ivr.flows.called_party", "ivr.flows.moves", "ivr.say", "ledger.transfers", "ledger.money")
IO_PACKAGES = frozenset({"twisted", "asyncpg", "pjsua2", "socket", "ssl", "selectors", "asyncio",
                         "http", "urllib3", "psycopg", "subprocess", "prometheus_client"})
# Pure modules that still load I/O packages today, and why. May only shrink.
IMPURE_EXEMPT: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imported(name: str, path: Path) -> set[str]:
    """Every module name ``path`` imports, at any depth of the file (lazy imports count)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return found


def _upward() -> set[tuple[str, str]]:
    out = set()
    for name, path in _modules().items():
        floor = FLOORS[name.split(".")[0]]
        for target in _imported(name, path):
            top = target.split(".")[0]
            if top in FLOORS and FLOORS[top] > floor:
                out.add((name, top))
    return out


def test_no_module_imports_a_module_of_a_higher_floor():
    new = sorted(_upward() - UPWARD_EXEMPT)
    assert not new, (
        "these modules import a higher floor (ledger, rating, ivr; switch, families; web; ops):"
        f" {new}")


def test_the_list_of_upward_imports_only_shrinks():
    gone = sorted(UPWARD_EXEMPT - _upward())
    assert not gone, f"these upward imports are gone: remove them from UPWARD_EXEMPT: {gone}"


def _room(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "switch" and len(parts) > 1 else None


def test_the_switch_rooms_import_only_the_rooms_below_them():
    crossing = []
    for name, path in _modules().items():
        room = _room(name)
        if room is None:
            continue
        assert room in SWITCH_ROOMS, f"{name}: switch/{room} is not a known room (SWITCH_ROOMS)"
        for target in _imported(name, path):
            other = _room(target)
            if other not in (None, room, "errors") and other not in SWITCH_ROOMS[room]:
                crossing.append((name, target))
    assert not crossing, f"these switch modules import a room they may not: {sorted(crossing)}"


def test_nothing_is_left_in_the_switch_hall_but_its_settings():
    loose = sorted(p.name for p in (ROOT / "switch").glob("*.py")
                   if p.name not in ("__init__.py", "settings.py", "errors.py"))
    assert not loose, f"modules outside any room of switch/: {loose}"


def _loaded_io(module: str) -> list[str]:
    """The I/O packages importing ``module`` loads, in a fresh interpreter."""
    code = (f"import sys, json, {module}; "
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return sorted(IO_PACKAGES & set(json.loads(done.stdout)))


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_imports_no_io(module):
    loaded = _loaded_io(module)
    if module in IMPURE_EXEMPT:
        assert loaded, f"{module} is pure now: remove it from IMPURE_EXEMPT"
    else:
        assert not loaded, f"importing {module} loads {loaded}"
