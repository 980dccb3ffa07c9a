"""The bench harness itself: the AWS emulation the timed benches share is moto in another
process with the modelled latency added (in-process moto shares the interpreter lock with
the code under test, which once turned a FAIL into a PASS), and `make run-benches` fails on
a bench that misses its budget, crashes, or exits non-zero after printing PASS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.awsnet import Emulation  # noqa: E402

MODEL = {"dynamodb.GetItem": 0.004, "dynamodb": 0.002, "per_kb": 0.0}


def test_the_emulation_serves_from_another_process_and_adds_the_modelled_latency() -> None:
    saved = dict(os.environ)  # the emulation points this process's boto3 at itself
    try:
        with Emulation(MODEL) as aws:
            assert aws.proc is not None and aws.proc.pid != os.getpid() and aws.proc.poll() is None
            ddb = boto3.client("dynamodb", endpoint_url=aws.endpoint, region_name="us-east-1",
                               aws_access_key_id="local", aws_secret_access_key="local")
            before = aws.stats()
            ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                             KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                             AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}])
            ddb.put_item(TableName="t", Item={"PK": {"S": "a"}})
            assert ddb.get_item(TableName="t", Key={"PK": {"S": "a"}})["Item"] == {"PK": {"S": "a"}}
            after = aws.stats()
            # CreateTable and PutItem fall back to the service's 2 ms, GetItem has its own 4 ms
            assert after["requests"] - before["requests"] == 3
            assert after["delay_s"] - before["delay_s"] == pytest.approx(0.008)
            with aws.no_latency():
                ddb.get_item(TableName="t", Key={"PK": {"S": "a"}})
            unmeasured = aws.stats()
            assert unmeasured["requests"] - after["requests"] == 1
            assert unmeasured["delay_s"] == pytest.approx(after["delay_s"])  # setup adds nothing
            ddb.get_item(TableName="t", Key={"PK": {"S": "a"}})
            assert aws.stats()["delay_s"] - unmeasured["delay_s"] == pytest.approx(0.004)  # and it comes back
            proc = aws.proc
        assert proc.poll() is not None, "the emulation's process outlived its block"
    finally:
        os.environ.clear()
        os.environ.update(saved)


BENCHES = {
    "passes.py": 'print("RESULT PASS ratio 1.31 (budget >= 1.2)")',
    "misses.py": 'import sys\nprint("RESULT FAIL ratio 1.05 (budget >= 1.2)")\nsys.exit(1)',
    "crashes.py": 'raise RuntimeError("the bench broke before its result")',
    "lies.py": 'import sys\nprint("RESULT PASS ratio 1.31")\nsys.exit(3)',
    # a second of CPU burnt in this process: what the machine's CPU line must at least show
    "burns.py": 'import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0:\n    pass\n'
                'print("RESULT PASS ratio 1.31")',
}


def run_benches(tmp_path: Path, names: list[str], *settings: str) -> subprocess.CompletedProcess[str]:
    for name, body in BENCHES.items():
        (tmp_path / name).write_text(textwrap.dedent(body) + "\n")
    paths = " ".join(str(tmp_path / n) for n in names)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    # its own output file: a `make bench` running meanwhile keeps its own
    return subprocess.run(["make", "--no-print-directory", "run-benches", f"BENCHES={paths}",
                           f"BENCH_OUT={tmp_path / 'bench-out.txt'}", *settings], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


SPENT = re.compile(r"took (\d+\.\d) s; machine CPU (\d+\.\d) s, (\d+\.\d\d) of (\d+) cores$")


def spent_lines(stdout: str) -> list[tuple[float, float, float, int]]:
    """(wall, CPU, cores busy, cores) of each "took" line: one per bench, then the loop's."""
    found = [SPENT.search(ln.strip()) for ln in stdout.splitlines() if ln.strip().startswith(("took", "benches took"))]
    assert found and all(found), stdout
    return [(float(m[1]), float(m[2]), float(m[3]), int(m[4])) for m in found if m]


def test_run_benches_passes_when_every_bench_passes(tmp_path: Path) -> None:
    done = run_benches(tmp_path, ["passes.py"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RESULT PASS ratio 1.31" in done.stdout and "over budget" not in done.stdout


def test_run_benches_prints_the_wall_and_the_machine_cpu_of_each_bench_and_of_the_loop(tmp_path: Path) -> None:
    # The clock and the CPU counter read from files the first bench moves on, by 0.5 s and by
    # 250 ticks: the figures are known, so a wrong scale, a swap of wall and CPU or a wrong
    # ratio shows.
    clock, ticks = tmp_path / "clock", tmp_path / "ticks"
    clock.write_text("1000.0\n")
    ticks.write_text("1000\n")
    (tmp_path / "ticks.py").write_text(
        f"import pathlib\nclock, ticks = pathlib.Path({str(clock)!r}), pathlib.Path({str(ticks)!r})\n"
        "clock.write_text(str(float(clock.read_text()) + 0.5))\nticks.write_text(str(int(ticks.read_text()) + 250))\n"
        "print('RESULT PASS ratio 1.31')\n")
    done = run_benches(tmp_path, ["ticks.py", "passes.py"], f"NOW=cat {clock}", f"MACHINE_CPU=cat {ticks}",
                       "CLOCK_TICKS=100", "CORES=7")
    assert done.returncode == 0, done.stdout + done.stderr
    first, second, loop = spent_lines(done.stdout)
    for wall, cpu, busy, cores in (first, loop):
        assert (wall, cpu, busy, cores) == (0.5, 2.5, 5.0, 7), done.stdout
    assert second == (0.0, 0.0, 0.0, 7), done.stdout


def test_run_benches_counts_the_machine_s_cpu_from_proc_stat(tmp_path: Path) -> None:
    done = run_benches(tmp_path, ["burns.py", "passes.py"])
    assert done.returncode == 0, done.stdout + done.stderr
    burns, passes, loop = spent_lines(done.stdout)
    cores = os.cpu_count() or 0
    for wall, cpu, _, n in (burns, loop):
        # the burning bench's own second, and no more than the cores could give in the wall time
        # (other processes only add; each figure is rounded to 0.1 s)
        assert n == cores and 0.9 <= cpu <= (wall + 0.1) * cores + 0.1, done.stdout
    assert burns[0] >= 0.9 and passes[3] == cores, done.stdout


def test_run_benches_fails_on_a_missed_budget_a_crash_and_a_pass_with_a_bad_exit(tmp_path: Path) -> None:
    done = run_benches(tmp_path, ["misses.py", "passes.py", "crashes.py", "lies.py"])
    assert done.returncode != 0, done.stdout
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("benches over budget:")]
    failed = sorted(Path(p).name for p in line.removeprefix("benches over budget:").split())
    assert failed == ["crashes.py", "lies.py", "misses.py"]
    assert "no RESULT line: the bench crashed" in done.stdout
