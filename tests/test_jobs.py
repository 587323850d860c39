"""The job engine: ledger, keys, seeds, executors, failures, resumption and dead workers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from advqa.jobs import (
    DaskExecutor,
    Ledger,
    LocalExecutor,
    ProcessExecutor,
    Unit,
    make_executor,
    run_units,
    unit_key,
    unit_seed,
    worker_cache,
)
from advqa.jobs.ledger import SettingsMismatchError

sys.path.insert(0, str(Path(__file__).parent))
import jobs_units  # workers import it by this name

TESTS = str(Path(__file__).parent)


def plan(count: int, seed: int = 7) -> list[Unit]:
    units = []
    for index in range(count):
        key = unit_key("noisy-sum", index)
        units.append(Unit(key, {"index": index}, (index, unit_seed(seed, key))))
    return units


def test_keys_and_seeds_depend_only_on_their_inputs():
    assert unit_key("a", {"x": 1, "y": 2}) == unit_key("a", {"y": 2, "x": 1})
    assert unit_key("a", 1) != unit_key("a", 2)
    key = unit_key("a", 1)
    assert unit_seed(3, key) == unit_seed(3, key) != unit_seed(4, key)
    assert 0 <= unit_seed(3, key) < 2**31


def test_ledger_commits_rows_with_their_unit_and_keeps_jobs_apart(tmp_path):
    with Ledger(tmp_path / "l.sqlite", "one") as one, Ledger(tmp_path / "l.sqlite", "two") as two:
        one.record("k1", {"a": 1}, [{"id": "r1", "v": 1}, {"id": "r2", "v": 2}])
        one.record("k2", {"a": 2}, [{"id": "r1", "v": 3}])  # same id: replaced
        assert one.finished() == {"k1", "k2"} and two.finished() == set()
        assert [row["v"] for row in one.rows()] == [2, 3]
        one.check_settings({"steps": 5})
        one.check_settings({"steps": 5})
        with pytest.raises(SettingsMismatchError, match=r"steps differ: stored steps=5; now "
                           r"steps=6"):
            one.check_settings({"steps": 6})
        two.check_settings({"steps": 6})  # another job's settings are its own


def test_a_failing_unit_is_listed_and_retried_next_run(tmp_path):
    units = [Unit(unit_key(i), {"index": i}, (i, 2)) for i in range(4)]
    with Ledger(tmp_path / "l.sqlite", "job") as ledger:
        with pytest.warns(UserWarning, match="unit 2 cannot run"):
            report = run_units(ledger, units, jobs_units.fails_on, executor=LocalExecutor(),
                               progress=False)
        assert (report.done, len(report.failures), report.all_failed) == (3, 1, False)
        assert report.failures[0].spec == {"index": 2}
        assert sorted(row["index"] for row in ledger.rows()) == [0, 1, 3]
        fixed = [Unit(unit.key, unit.spec, (unit.spec["index"], -1)) for unit in units]
        report = run_units(ledger, fixed, jobs_units.fails_on, executor=LocalExecutor(),
                           progress=False)
        assert (report.skipped, report.done) == (3, 1)
        assert sorted(row["index"] for row in ledger.rows()) == [0, 1, 2, 3]


def test_every_unit_failing_is_reported():
    from advqa.jobs import JobReport, UnitFailure

    assert JobReport(2, 0, 0, [UnitFailure("a", {}, "x"), UnitFailure("b", {}, "x")]).all_failed
    assert not JobReport(2, 2, 0).all_failed


def rows_with(executor, tmp_path, name) -> list[dict]:
    with Ledger(tmp_path / f"{name}.sqlite", "job") as ledger, executor:
        report = run_units(ledger, plan(6), jobs_units.noisy_sum, executor=executor,
                           shared={"scale": 0.5}, progress=False)
        assert report.done == 6
        return sorted(ledger.rows(), key=lambda row: row["index"])


def test_results_do_not_depend_on_the_executor(tmp_path):
    local = rows_with(LocalExecutor(), tmp_path, "local")
    assert rows_with(ProcessExecutor(2), tmp_path, "process") == local
    assert rows_with(DaskExecutor(workers=2), tmp_path, "dask") == local


def test_engine_options_are_checked():
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        make_executor("spark")
    with pytest.raises(ValueError, match="need --engine process or dask"):
        make_executor("local", workers=2)
    with pytest.raises(ValueError, match="--scheduler needs --engine dask"):
        make_executor("process", scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match=r"either --workers N .* or --scheduler"):
        make_executor("dask")
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        make_executor("process", workers=0)


def test_worker_cache_builds_once():
    calls = []

    def build(name):
        calls.append(name)
        return object()

    assert worker_cache(build, "a") is worker_cache(build, "a")
    worker_cache(build, "b")
    assert calls == ["a", "b"]


def test_a_dask_cluster_listens_on_loopback_only():
    with DaskExecutor(workers=1) as executor:
        assert executor.client.scheduler.address.startswith("tcp://127.0.0.1:")
        for address in executor.client.scheduler_info()["workers"]:
            assert address.startswith("tcp://127.0.0.1:")


def test_a_killed_dask_worker_loses_no_unit(tmp_path):
    units = [Unit(unit_key("slow", i), {"index": i}, (i, 0.4)) for i in range(12)]
    with Ledger(tmp_path / "l.sqlite", "job") as ledger, DaskExecutor(workers=2) as executor:
        victims = list(executor.client.run(os.getpid).values())
        killed = []

        def commit(unit, rows):
            if not killed and len(ledger.finished()) >= 2:  # mid-run: kill one worker
                os.kill(victims[0], signal.SIGKILL)
                killed.append(victims[0])
            return rows

        report = run_units(ledger, units, jobs_units.slow, executor=executor,
                           on_result=commit, progress=False)
        assert killed and report.done == 12 and not report.failures
        rows = ledger.rows()
        assert sorted(row["index"] for row in rows) == list(range(12))  # none lost, none twice
        count = sqlite3.connect(tmp_path / "l.sqlite").execute(
            "SELECT count(*) FROM job_rows").fetchone()[0]
        assert count == 12


CLIENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import jobs_units
    from advqa.jobs import Ledger, Unit, make_executor, run_units, unit_key
    units = [Unit(unit_key("slow", i), {{"index": i}}, (i, 0.3)) for i in range(16)]
    with Ledger({ledger!r}, "job") as ledger, make_executor({engine!r}, workers=2) as executor:
        report = run_units(ledger, units, jobs_units.slow, executor=executor, progress=False)
    print("done", report.skipped, report.done, flush=True)
""")


def finished_count(path: Path) -> int:
    try:
        with sqlite3.connect(path) as connection:
            return connection.execute("SELECT count(*) FROM job_units").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("engine", ["process", "dask"])
def test_a_killed_client_resumes_without_loss_or_duplicates(tmp_path, engine):
    ledger = tmp_path / "l.sqlite"
    script = CLIENT.format(tests=TESTS, ledger=str(ledger), engine=engine)
    client = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while finished_count(ledger) < 4 and time.monotonic() < deadline and client.poll() is None:
        time.sleep(0.05)
    client.send_signal(signal.SIGKILL)
    client.wait()
    interrupted = finished_count(ledger)
    assert 4 <= interrupted < 16, "the kill should land mid-run"
    # The workers die with their client, even by kill -9: nothing of its process group
    # is left (it was started in a session of its own).
    deadline = time.monotonic() + 20
    while group_alive(client.pid):
        assert time.monotonic() < deadline, "workers outlived their killed client"
        time.sleep(0.2)
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    skipped, done = map(int, finished.stdout.split()[1:3])
    assert skipped >= interrupted and skipped + done == 16
    with Ledger(ledger, "job") as resumed:
        assert sorted(row["index"] for row in resumed.rows()) == list(range(16))
