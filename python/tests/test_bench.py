"""``python -m ringxfer.bench`` as a user runs it (a subprocess): bad ``--count`` /
``--repeat`` values are usage errors (exit status 2, argparse's one-line message, no
traceback), and a run too short to judge prints its ratios without a verdict."""

import re
import subprocess
import sys

import pytest

PROG = "python -m ringxfer.bench"


def bench(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "ringxfer.bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "flag, value",
    [("--count", "0"), ("--count", "-5"), ("--count", "abc"), ("--count", "1.5"), ("--repeat", "0"), ("--repeat", "-1")],
)
def test_bad_count_or_repeat_is_a_usage_error(flag, value):
    r = bench("%s=%s" % (flag, value))
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    last = r.stderr.strip().splitlines()[-1]
    assert last == "%s: error: argument %s: must be a positive integer, not %r" % (PROG, flag, value)
    assert "Traceback" not in r.stderr


def test_no_case_is_a_usage_error():
    r = bench("--cases", ",")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "%s: error: --cases names no case" % PROG


def test_tiny_count_prints_ratios_without_verdict():
    r = bench("--count", "1", "--repeat", "2", "--cases", "recipe,binding uring,binding fresh")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "# python -m ringxfer.bench --count 1 --repeat 2 (8 bytes float64, loopback TCP, two processes)"
    goals = [l for l in lines if l.startswith("goal ")]
    no_verdict = r" \(no verdict: median runs of [0-9.e-]+ s and [0-9.e-]+ s, under 0\.1 s; use a larger --count\)"
    assert len(goals) == 2, r.stdout
    assert re.fullmatch(r"goal binding uring / recipe >= 1\.3: [0-9.]+" + no_verdict, goals[0]), goals[0]
    assert re.fullmatch(
        r"goal binding fresh / binding uring \(pre-touched\) >= 0\.9: [0-9.]+" + no_verdict, goals[1]
    ), goals[1]
    assert "met" not in r.stdout and "missed" not in r.stdout


def test_verdict_needs_runs_long_enough():
    from ringxfer.bench import MIN_VERDICT_SECONDS, verdict

    assert MIN_VERDICT_SECONDS == 0.1
    assert verdict(1.5, 1.3, (0.2, 0.3)) == "met"
    assert verdict(1.0, 1.3, (0.1, 0.3)) == "missed"
    assert verdict(2.0, 1.3, (0.3, 0.0004)) == (
        "no verdict: median runs of 0.3 s and 0.0004 s, under 0.1 s; use a larger --count"
    )
