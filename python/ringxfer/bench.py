"""``python -m ringxfer.bench``: the recipe against ringxfer, as a Python user would run it.

Two processes over loopback TCP (this one receives, a child sends), one connection, the
cases alternating round-robin so that machine load hits them alike; every case moves the same
array (``--count`` float64, default 50,000,000 = 400 MB, element i == i) and is checked after
each run (outside the timing). A run is timed at the receiver, from the request to the sender
until the last byte is in. Cases:

* ``recipe``: the pure-Python ``send_from``/``recv_into`` (``ringxfer.recipe``), into a
  pre-touched array;
* ``recipe fresh``: the same, with ``numpy.zeros`` per receive (inside the timing);
* ``binding uring`` / ``binding blocking``: ``Engine(backend).send_from``/``recv_into``,
  pre-touched;
* ``binding fresh``: ``recv_into`` (uring) of a ``numpy.zeros`` made per receive;
* ``binding empty``: ``recv_into`` (uring) of a ``ringxfer.empty`` array made per receive
  (the engine's recycled pages once the previous run's array was dropped: what ringxfer
  offers a fresh-array receiver instead of ``numpy.zeros``);
* ``framed``: ``send_array``/``recv_array`` (the receiver allocates; large arrays reuse the
  pages of dropped ones);
* ``framed npy``: ``send_array(..., format="npy")``/``recv_array``: the same calls with
  numpy's ``.npy`` stream on the wire, which carries no checksum — beside ``framed``, the
  cost of RGXF's CRC-32;
* ``npy``: ``numpy.save`` / ``numpy.lib.format.read_array`` over ``sock.makefile()``. numpy
  2.4 cannot use a socket's ``makefile()`` directly: ``numpy.save`` calls ``tofile``, which
  asks a file with ``fileno()`` for its position, and ``numpy.load`` seeks back after reading
  the magic; so the file objects are wrapped to show only ``write``/``read`` (numpy then
  writes and reads in chunks) and the receiver calls ``read_array``, which ``numpy.load``
  calls after its seek.

Prints median GB/s (1e9 bytes/s) with min-max over ``--repeat`` runs and the issue's goals.

``--count`` and ``--repeat`` must be positive integers (else a usage error, exit status 2).
A goal's verdict (``met``/``missed``) is printed only when the median run of both its cases
lasts at least ``MIN_VERDICT_SECONDS`` (0.1 s): shorter runs measure the request's round trip,
Python's per-call overhead and the timer more than the transfer, and arrays that fit in the
CPU caches are not what the goals are about (the recipe's 400 MB). Below that the ratio is
still printed, with ``(no verdict: …)`` saying why. At 2 GB/s a 0.1 s run moves 200 MB
(``--count 25000000``); the default 400 MB lasts about twice that.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import socket
import statistics
import struct
import time

import numpy

import ringxfer
from ringxfer import recipe

#: Shortest median run (seconds) of both cases of a goal for its verdict to be printed (see
#: the module docs).
MIN_VERDICT_SECONDS = 0.1

#: (name, how the sender sends, how the receiver receives)
CASES = [
    "recipe",
    "recipe fresh",
    "binding uring",
    "binding blocking",
    "binding fresh",
    "binding empty",
    "framed",
    "framed npy",
    "npy",
]


class _Stream:
    """A socket file object showing only ``read``/``write`` (see the module docs, ``npy``)."""

    def __init__(self, f):
        self.read = getattr(f, "read", None)
        self.write = getattr(f, "write", None)


def _sender(port, count, backends):
    """The child process: sends the array as each request byte says, until told to stop."""
    a = numpy.arange(count, dtype=numpy.float64)
    engines = {b: ringxfer.Engine(backend=b) for b in backends}
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            req = sock.recv(1)
            if not req or req == b"\xff":
                return
            case = CASES[req[0]]
            if case.startswith("recipe"):
                recipe.send_from(a, sock)
            elif case == "binding blocking":
                engines["blocking"].send_from(a, sock)
            elif case.startswith("binding"):
                engines["uring"].send_from(a, sock)
            elif case == "framed":
                engines["uring"].send_array(sock, a)
            elif case == "framed npy":
                engines["uring"].send_array(sock, a, format="npy")
            else:
                with sock.makefile("wb") as f:
                    numpy.save(_Stream(f), a)


def _receive(case, sock, count, pretouched, engines):
    """One receive of ``case``; returns the received array."""
    if case == "recipe":
        recipe.recv_into(pretouched, sock)
        return pretouched
    if case == "recipe fresh":
        out = numpy.zeros(count)
        recipe.recv_into(out, sock)
        return out
    if case == "binding blocking":
        engines["blocking"].recv_into(pretouched, sock)
        return pretouched
    if case == "binding uring":
        engines["uring"].recv_into(pretouched, sock)
        return pretouched
    if case == "binding fresh":
        out = numpy.zeros(count)
        engines["uring"].recv_into(out, sock)
        return out
    if case == "binding empty":
        out = engines["uring"].empty(count)
        engines["uring"].recv_into(out, sock)
        return out
    if case in ("framed", "framed npy"):
        return engines["uring"].recv_array(sock)
    with sock.makefile("rb") as f:
        return numpy.lib.format.read_array(_Stream(f))


def _check(a, count, case):
    step = max(1, count // 4096)
    if a.shape != (count,) or not numpy.array_equal(a[::step], numpy.arange(0, count, step)):
        raise SystemExit("%s: received array differs from the sent one" % case)
    if count and a[-1] != count - 1:
        raise SystemExit("%s: last element differs" % case)
    a.fill(-1.0)  # the next run must write every byte again to pass


def _positive_int(text):
    """``--count`` and ``--repeat``: an integer >= 1 (argparse turns the error into a usage
    error, exit status 2)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError("must be a positive integer, not %r" % text)
    return n


def verdict(ratio, goal, seconds):
    """``met``/``missed`` for ``ratio`` against ``goal``, or ``no verdict: …`` when a median
    run in ``seconds`` (numerator's, denominator's) is shorter than ``MIN_VERDICT_SECONDS``."""
    if min(seconds) < MIN_VERDICT_SECONDS:
        return "no verdict: median runs of %.2g s and %.2g s, under %g s; use a larger --count" % (
            seconds[0],
            seconds[1],
            MIN_VERDICT_SECONDS,
        )
    return "met" if ratio >= goal else "missed"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ringxfer.bench", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=_positive_int, default=50_000_000,
                   help="float64 elements, >= 1 (default 50000000: 400 MB)")
    p.add_argument("--repeat", type=_positive_int, default=5, help="runs per case, >= 1 (default 5)")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error("unknown case(s): %s" % ", ".join(unknown))
    if not cases:
        p.error("--cases names no case")
    uring_ok, why = ringxfer.probe()
    backends = ["blocking", "uring"] if uring_ok else ["blocking"]
    if not uring_ok:
        print("io_uring unavailable (%s): uring cases run on the blocking backend" % why)
    engines = {b: ringxfer.Engine(backend=b) for b in backends}
    engines.setdefault("uring", engines["blocking"])
    nbytes = args.count * 8
    pretouched = numpy.zeros(args.count)
    pretouched.fill(-1.0)

    srv = socket.create_server(("127.0.0.1", 0))
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_sender, args=(srv.getsockname()[1], args.count, backends))
    child.start()
    sock, _ = srv.accept()
    srv.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = {c: [] for c in cases}
    try:
        for _ in range(args.repeat):
            for case in cases:
                t0 = time.perf_counter()
                sock.sendall(struct.pack("B", CASES.index(case)))
                a = _receive(case, sock, args.count, pretouched, engines)
                times[case].append(time.perf_counter() - t0)
                _check(a, args.count, case)
                del a
        sock.sendall(b"\xff")
    finally:
        sock.close()
        child.join(60)

    rate = {c: [nbytes / t / 1e9 for t in ts] for c, ts in times.items()}
    med = {c: statistics.median(r) for c, r in rate.items()}
    med_s = {c: statistics.median(ts) for c, ts in times.items()}
    size = "%.0f MB" % (nbytes / 1e6) if nbytes >= 1e6 else "%d bytes" % nbytes
    print("# python -m ringxfer.bench --count %d --repeat %d (%s float64, loopback TCP, two processes)"
          % (args.count, args.repeat, size))
    print("# %s, Python %s, numpy %s, ringxfer %s, %d CPUs"
          % (platform.platform(), platform.python_version(), numpy.__version__, ringxfer.__version__,
             multiprocessing.cpu_count()))
    print("| case | median GB/s | min-max GB/s | vs recipe |")
    print("|---|---|---|---|")
    base = med.get("recipe")
    for c in cases:
        vs = "%.2fx" % (med[c] / base) if base else "-"
        print("| %s | %.2f | %.2f-%.2f | %s |" % (c, med[c], min(rate[c]), max(rate[c]), vs))
    goals = [
        ("binding uring / recipe", "binding uring", "recipe", 1.3),
        ("framed recv_array / numpy.load", "framed", "npy", 1.5),
        ("binding fresh / binding uring (pre-touched)", "binding fresh", "binding uring", 0.9),
        ("binding empty / binding uring (pre-touched)", "binding empty", "binding uring", 0.9),
    ]
    for name, num, den, goal in goals:
        if num in med and den in med:
            r = med[num] / med[den]
            print("goal %s >= %.1f: %.2f (%s)" % (name, goal, r, verdict(r, goal, (med_s[num], med_s[den]))))


if __name__ == "__main__":
    main()
