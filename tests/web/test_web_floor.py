"""web sits below ops: importing the whole API never pulls in ops (nor pjsua2)."""
import subprocess
import sys


def test_the_api_imports_neither_ops_nor_pjsua2():
    code = ("import sys, web, web.endpoints, web.openapi\n"
            "web.api_document()\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ops', 'pjsua2'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
