"""``dir(ringxfer)`` shows the documented API and nothing else: the modules the package uses
(``os``, ``threading``, ``numpy``) and ``from __future__ import annotations`` are not public
names. Checked in a fresh interpreter, so that no other test's import of a submodule
(``ringxfer.recipe``, ``ringxfer.bench``) adds to the namespace."""

import json
import subprocess
import sys

#: The public API as README.md ("Python") and the package docstring list it.
DOCUMENTED = {
    "Engine",
    "send_from",
    "recv_into",
    "send_array",
    "recv_array",
    "empty",
    "probe",
    "FORMATS",
    "DEFAULT_MAX_PAYLOAD",
    "INTERRUPT_POLL_SECONDS",
    "Error",
    "UnexpectedEOF",
    "TransferOSError",
    "TimedOut",
    "FrameError",
    "NotStreamError",
    "BackendUnavailable",
}


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
    assert set(public) == DOCUMENTED
    assert sorted(all_) == sorted(DOCUMENTED | {"__version__"})


def test_empty_is_an_engine_method_and_a_module_function():
    got = fresh(
        "import json, ringxfer; e = ringxfer.Engine(); a = e.empty((2, 3), 'i4', 'F'); "
        "b = ringxfer.empty(5); "
        "print(json.dumps([a.shape, a.dtype.str, a.flags.f_contiguous, b.shape, b.dtype.str]))"
    )
    assert got == [[2, 3], "<i4", True, [5], "<f8"]
