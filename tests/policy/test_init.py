"""engine/policy/__init__.py: the package imports without any compiled module."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_policy_imports_without_the_compiled_hot_path():
    # every module of the package except link.py, the one allowed to import engine._fast
    code = (
        "import importlib, pkgutil, sys, engine.policy\n"
        "for info in pkgutil.iter_modules(engine.policy.__path__):\n"
        "    if info.name != 'link':\n"
        "        importlib.import_module('engine.policy.' + info.name)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('engine._fast'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_public_names():
    import engine.policy as policy
    for name in policy.__all__:
        assert hasattr(policy, name), name
