"""families sits beside switch, below web and ops: importing every module of it pulls in neither
web nor ops (nor pjsua2)."""
import subprocess
import sys


def test_families_imports_neither_web_nor_ops():
    code = ("import sys, pkgutil, importlib, families\n"
            "for m in pkgutil.iter_modules(families.__path__):\n"
            "    importlib.import_module('families.' + m.name)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'web', 'ops', 'pjsua2'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
