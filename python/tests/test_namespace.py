"""``dir(ringxfer)`` shows the documented API and nothing else: the modules the package uses
(``os``, ``threading``, ``numpy``) and ``from __future__ import annotations`` are not public
names. Checked in a fresh interpreter, so that no other test's import of a submodule
(``ringxfer.recipe``, ``ringxfer.bench``) adds to the namespace."""

import json
import os
import re
import subprocess
import sys

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def documented():
    """The names on README.md's one line ``Public names: `Engine`, `send_from`, ….``"""
    with open(README, encoding="utf-8") as f:
        lines = [l for l in f if l.startswith("Public names: ")]
    assert len(lines) == 1, lines
    names = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", lines[0]))
    assert len(names) >= 10, names
    return names


def fresh(code):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_public_names_are_the_documented_api():
    got = fresh(
        "import json, ringxfer; "
        "print(json.dumps([sorted(n for n in dir(ringxfer) if not n.startswith('_')), ringxfer.__all__]))"
    )
    public, all_ = got
    assert set(public) == documented()
    assert sorted(all_) == sorted(documented() | {"__version__"})


def test_empty_is_an_engine_method_and_a_module_function():
    got = fresh(
        "import json, ringxfer; e = ringxfer.Engine(); a = e.empty((2, 3), 'i4', 'F'); "
        "b = ringxfer.empty(5); "
        "print(json.dumps([a.shape, a.dtype.str, a.flags.f_contiguous, b.shape, b.dtype.str]))"
    )
    assert got == [[2, 3], "<i4", True, [5], "<f8"]
