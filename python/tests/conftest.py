"""Fixtures of the Python package's tests.

Every behaviour test runs on both backends through the ``backend`` fixture, which sets
``RINGXFER_BACKEND`` (the package's per-thread default engine follows it). The uring variant
skips, saying why, where io_uring is unavailable — or fails when
``RINGXFER_TEST_REQUIRE_URING=1`` (CI), so it never silently runs on the blocking backend.
"""

import os
import socket
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import ringxfer  # noqa: E402


@pytest.fixture(params=["blocking", "uring"])
def backend(request, monkeypatch):
    name = request.param
    if name == "uring":
        available, reason = ringxfer.probe()
        if not available:
            if os.environ.get("RINGXFER_TEST_REQUIRE_URING") == "1":
                pytest.fail("io_uring unavailable but RINGXFER_TEST_REQUIRE_URING=1: %s" % reason)
            pytest.skip("io_uring unavailable: %s" % reason)
    monkeypatch.setenv("RINGXFER_BACKEND", name)
    engine = ringxfer.Engine()
    assert engine.backend == name, "RINGXFER_BACKEND=%s gave %s" % (name, engine.backend)
    return name


def tcp_pair():
    """A connected loopback TCP pair ``(a, b)``."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        a = socket.create_connection(srv.getsockname())
        b, _ = srv.accept()
    return a, b


@pytest.fixture
def pair():
    a, b = tcp_pair()
    yield a, b
    a.close()
    b.close()


class Peer:
    """Runs ``fn(*args)`` on a thread; ``result()`` joins it (bounded) and re-raises."""

    def __init__(self, fn, *args):
        self.value = None
        self.error = None

        def run():
            try:
                self.value = fn(*args)
            except BaseException as e:  # noqa: B902 - handed to the test
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout=60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "peer thread still running after %ss" % timeout
        if self.error is not None:
            raise self.error
        return self.value
