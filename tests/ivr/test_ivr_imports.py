import subprocess
import sys


def test_the_ivr_imports_neither_twisted_asyncpg_nor_pjsua2():
    code = ("import sys, ivr.catalog, ivr.say, ivr.names, ivr.settings, ivr.audio, "
            "ivr.make_prompts, ivr.flows.inmate, ivr.flows.called_party\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('twisted', 'asyncpg', 'pjsua2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
