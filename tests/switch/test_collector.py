"""The core process's collector tuning (switch.control.collector), in a process of its own: the
heap alive at start is frozen out of collections, the young generation is larger, and cycles
made later are still collected."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import gc, weakref
from switch.control import collector
before = gc.get_threshold()
collector.tune()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
assert gc.get_threshold() == (collector.YOUNG_OBJECTS,) + before[1:], gc.get_threshold()
class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a
gone = weakref.ref(a)
del a, b
gc.collect()
assert gone() is None
print("ok")
"""


def test_tuning_freezes_the_start_heap_and_grows_the_young_generation():
    out = subprocess.run([sys.executable, "-c", PROGRAM], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
