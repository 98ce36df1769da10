"""The one run path (issue 12, items 4, 5, 7, 8): failures that report, output folders, byte-stable files, replot.

The engine's toy sweep is used throughout (fast); the replot test covers every
registered experiment on its committed quick table.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest
from toy_experiments import ARRAY, TOY

import phase_transition.grid as grid_module
import phase_transition.results as results_module
from phase_transition import run_grid
from phase_transition.cli import main
from phase_transition.fingerprint import code_fingerprint
from phase_transition.pipeline import OutputError, replot, run_experiment
from phase_transition.registry import get_experiment, list_experiments, register
from phase_transition.report import build_report

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True, scope="module")
def _toy_registered():
    register(TOY)
    register(ARRAY)


def _main(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, [line for line in out.err.splitlines() if line.strip()]


def _calls(log: Path) -> int:
    return len(list(log.glob("call-*")))


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- failures that report
def test_all_failed_sweep_writes_the_table_exits_1_and_draws_nothing(tmp_path, capsys):
    out = tmp_path / "res"
    out.mkdir()
    (out / "toy-sweep.png").write_bytes(b"an old figure")
    code, stdout, err = _main(["run", "toy-sweep", "--quick", "--quiet", "--out", str(out), "--set", "fail_all=true"],
                              capsys)
    assert code == 1
    assert len(err) == 1 and "Traceback" not in "\n".join(err)
    assert "all 18 rows failed; first error: MemoryError: toy: cannot allocate for a=1" in err[0]
    table = pd.read_csv(out / "toy-sweep.csv", keep_default_na=False)
    assert len(table) == 18 and (table["error"].str.startswith("MemoryError")).all()
    meta = json.loads((out / "toy-sweep.json").read_text())
    assert meta["n_errors"] == 18 and meta["summary"] == {}
    assert not (out / "toy-sweep.png").exists()  # no figure, and no stale one


def test_all_failed_crashes_without_the_shared_filter(tmp_path, monkeypatch):
    """The mechanism switched off (failed rows not filtered in the run path): the crash of issue 12 comes back."""
    import phase_transition.pipeline as pipeline

    monkeypatch.setattr(pipeline, "successful_rows", lambda table: table)
    with pytest.raises(KeyError, match="Column not found: big"):
        run_experiment(TOY, tmp_path, quick=True, params={"fail_all": True})
    assert not (tmp_path / "toy-sweep.csv").exists()


def test_partly_failed_sweep_writes_everything_and_says_how_many(tmp_path, capsys):
    out = tmp_path / "res"
    code, stdout, err = _main(["run", "toy-sweep", "--quick", "--quiet", "--out", str(out), "--set", "fail_on=2"], capsys)
    assert code == 0, err
    assert "toy-sweep: 18 rows, 2 failed (first error: ValueError: toy failure at a=2 trial=1)" in stdout
    for ext in ("csv", "json", "png"):
        assert (out / f"toy-sweep.{ext}").exists()
    meta = json.loads((out / "toy-sweep.json").read_text())
    assert meta["n_errors"] == 2 and meta["summary"]["rows"] == 16  # summarize saw the successful rows only


# --------------------------------------------------------------------------- output folders
@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_unwritable_out_is_one_line_exit_2_before_computing(where, tmp_path, capsys):
    log = tmp_path / "log"
    log.mkdir()
    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "res"
    else:
        out = Path("/proc/phase-transition-test/res")
    code, stdout, err = _main(["run", "toy-sweep", "--quick", "--quiet", "--out", str(out), "--set", f"log_dir={log}"],
                              capsys)
    assert code == 2 and len(err) == 1 and "not a writable folder" in err[0] and str(out) in err[0]
    assert _calls(log) == 0  # nothing computed
    with pytest.raises(OutputError, match="not a writable folder"):
        run_experiment(TOY, out, quick=True)


def test_complete_cache_in_a_read_only_folder_is_read_without_writing(tmp_path, monkeypatch):
    cache, log = tmp_path / "cache", tmp_path / "log"
    log.mkdir()
    params = {"log_dir": str(log)}
    first = run_grid(TOY, quick=True, params=params, cache_dir=cache, progress=False)
    folder = next(p for p in cache.iterdir() if p.is_dir())
    before = _snapshot(folder)

    def no_write(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    # every way the engine writes into the cache folder now fails, as on a read-only file system
    monkeypatch.setattr(grid_module, "atomic_write", no_write)
    monkeypatch.setattr(grid_module, "_save_chunk", no_write)
    monkeypatch.setattr(grid_module._Claims, "_locked", no_write)
    again = run_grid(TOY, quick=True, params=params, cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(again.drop(columns="runtime_s"), first.drop(columns="runtime_s"))
    assert _snapshot(folder) == before and _calls(log) == 3
    # an incomplete cache in that folder: one line naming it, before computing
    next(folder.glob("chunk-*.json")).unlink()
    with pytest.raises(ValueError, match="cache_dir: cannot write into"):
        run_grid(TOY, quick=True, params=params, cache_dir=cache, progress=False)
    assert _calls(log) == 3


@pytest.mark.skipif(sys.platform == "win32" or __import__("os").geteuid() == 0,
                    reason="permission bits do not stop root (the test above simulates a read-only file system)")
def test_read_only_folder_for_real(tmp_path):  # pragma: no cover - not run as root
    cache = tmp_path / "cache"
    first = run_grid(TOY, quick=True, cache_dir=cache, progress=False)
    for p in [cache, *cache.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        again = run_grid(TOY, quick=True, cache_dir=cache, progress=False)
        pd.testing.assert_frame_equal(again.drop(columns="runtime_s"), first.drop(columns="runtime_s"))
    finally:
        for p in [cache, *cache.rglob("*")]:
            p.chmod(0o755)


def test_two_concurrent_runs_into_one_folder_compute_each_chunk_once(tmp_path):
    """20 repetitions of two simultaneous sweeps into one cache folder: no crash, every chunk computed once."""
    reference = run_grid(TOY, quick=True, seed=3, progress=False).drop(columns="runtime_s")
    for rep in range(20):
        log, cache = tmp_path / f"log{rep}", tmp_path / f"cache{rep}"
        log.mkdir()
        params = {"log_dir": str(log), "sleep_s": 0.01}
        tables, errors = [None, None], []

        def sweep(k):
            try:
                tables[k] = run_grid(TOY, quick=True, seed=3, params=params, cache_dir=cache, progress=False)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=sweep, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        calls = sorted(p.read_text() for p in log.glob("call-*"))
        assert len(calls) == 3 and len(set(calls)) == 3, (rep, calls)  # three chunks, each computed once
        for table in tables:
            pd.testing.assert_frame_equal(table.drop(columns="runtime_s"), reference)
        folder = next(p for p in cache.iterdir() if p.is_dir())
        assert not list(folder.glob("*.claim")) and not list(folder.glob(".tmp-*"))


@pytest.mark.slow
def test_two_concurrent_processes_and_a_killed_one(tmp_path):
    """Two processes at once share the chunks; a claim left by a killed process is taken over."""
    log, cache = tmp_path / "log", tmp_path / "cache"
    log.mkdir()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from phase_transition import run_grid
        from toy_experiments import TOY
        run_grid(TOY, quick=True, params={{"log_dir": {str(log)!r}, "sleep_s": 0.3}}, cache_dir={str(cache)!r},
                 progress=False)
        """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read()
    calls = sorted(p.read_text() for p in log.glob("call-*"))
    assert len(calls) == 3 and len(set(calls)) == 3
    # a stale claim (a process that no longer exists) does not block
    folder = next(p for p in cache.iterdir() if p.is_dir())
    victim = sorted(folder.glob("chunk-*.json"))[0]
    victim.unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    victim.with_suffix(".claim").write_text(f"{socket.gethostname()} {int(dead.stdout)} deadbeef")
    run_grid(TOY, quick=True, params={"log_dir": str(log), "sleep_s": 0.3}, cache_dir=cache, progress=False)
    assert _calls(log) == 4


# --------------------------------------------------------------------------- byte-stable files
def test_timings_are_in_the_json_not_the_csv_and_reruns_change_no_byte(tmp_path):
    out = tmp_path / "res"
    first = run_experiment(TOY, out, quick=True, cache_dir=tmp_path / "cache")
    header = (out / "toy-sweep.csv").read_text().splitlines()[0]
    assert header == "a,b,trial,seed,value,big,error"
    meta = json.loads((out / "toy-sweep.json").read_text())
    assert len(meta["row_runtime_s"]) == 18 and meta["compute_s"] >= 0 and "fingerprint" in meta
    assert first.table["runtime_s"].notna().all()  # the DataFrame keeps its timings
    before = _snapshot(out)
    run_experiment(TOY, out, quick=True, cache_dir=tmp_path / "cache")  # from the cache
    assert _snapshot(out) == before
    run_experiment(TOY, out, quick=True, cache_dir=None)  # recomputed: new timings, same values
    assert _snapshot(out) == before


def test_without_keeping_saved_timings_a_recomputed_run_rewrites_the_json(tmp_path, monkeypatch):
    """The mechanism switched off (no timing carried over): the JSON changes although the table did not."""
    out = tmp_path / "res"
    run_experiment(TOY, out, quick=True, params={"sleep_s": 0.001})
    before = (out / "toy-sweep.json").read_bytes()
    monkeypatch.setattr(results_module, "TIMING_KEYS", ())
    run_experiment(TOY, out, quick=True, params={"sleep_s": 0.001})
    assert (out / "toy-sweep.json").read_bytes() != before


def test_report_twice_changes_no_file(tmp_path):
    register(TOY)
    build_report(tmp_path, quick=True, names=["toy-sweep", "toy-numpy"], progress=False, echo=lambda m: None,
                 use_cache=False)
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    build_report(tmp_path, quick=True, names=["toy-sweep", "toy-numpy"], progress=False, echo=lambda m: None,
                 use_cache=False)
    after = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert after == before
    assert (tmp_path / "quick" / "README.md").read_text().startswith("# Report (quick): ")


# --------------------------------------------------------------------------- replot
def test_plot_from_a_saved_table(tmp_path, capsys, monkeypatch):
    out = tmp_path / "res"
    run_experiment(TOY, out, quick=True, params={"fail_on": 2})
    png = (out / "toy-sweep.png").read_bytes()
    (out / "toy-sweep.png").unlink()
    monkeypatch.setattr(grid_module, "run_chunk", lambda *a, **k: pytest.fail("plot recomputed rows"))
    code, stdout, err = _main(["plot", "toy-sweep", "--from", str(out)], capsys)
    assert code == 0, err
    assert (out / "toy-sweep.png").read_bytes() == png  # the same figure from the table alone
    code, stdout, err = _main(["plot", "toy-sweep", "--from", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and len(err) == 1 and "no saved table of toy-sweep" in err[0]


def _package_experiments():
    return [e for e in list_experiments() if e.run.__module__.startswith("phase_transition.experiments.")]


@pytest.mark.parametrize("name", [e.name for e in _package_experiments() if e.plot is not None])
def test_every_figure_is_rebuilt_from_its_saved_quick_table(name, tmp_path, monkeypatch):
    folder = ROOT / "reports" / "quick"
    if not (folder / f"{name}.csv").exists():
        pytest.skip(f"no committed quick table of {name} yet (the report is regenerated at the end)")
    monkeypatch.setattr(grid_module, "run_chunk", lambda *a, **k: pytest.fail("plot recomputed rows"))
    saved = json.loads((folder / f"{name}.json").read_text()).get("fingerprint")
    try:
        path = replot(name, folder, tmp_path / f"{name}.png")
    except Exception as exc:
        if saved != code_fingerprint(get_experiment(name)):  # the table predates the code: not this test's concern
            pytest.xfail(f"the committed quick table of {name} predates its current code (regenerate the report): "
                         f"{type(exc).__name__}: {exc}")
        raise
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


# --------------------------------------------------------------------------- the report on a Dask cluster
@pytest.mark.slow
def test_report_on_a_dask_cluster_of_two_processes_gives_the_tables_of_one_job(tmp_path):
    """`report --backend dask --scheduler ADDRESS` on a loopback cluster of two worker processes: the same tables."""
    pytest.importorskip("dask.distributed")
    from dask.distributed import Client, LocalCluster

    names = ["toy-sweep", "toy-numpy"]
    build_report(tmp_path / "one", quick=True, names=names, progress=False, echo=lambda m: None)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        build_report(tmp_path / "dask", quick=True, names=names, backend="dask", scheduler=cluster.scheduler_address,
                     progress=False, echo=lambda m: None)
        pids = client.run(__import__("os").getpid)
        assert len(set(pids.values())) == 2 and __import__("os").getpid() not in pids.values()
    for name in names:
        one, dask = (tmp_path / where / "quick" / f"{name}.csv" for where in ("one", "dask"))
        assert dask.read_bytes() == one.read_bytes()
    one, dask = (tmp_path / where / "quick" / "toy-sweep.png" for where in ("one", "dask"))
    assert dask.read_bytes() == one.read_bytes()


def test_report_command_passes_backend_and_scheduler(tmp_path, monkeypatch, capsys):
    import phase_transition.report as report_module

    seen = {}

    def fake_build_report(out, **kwargs):
        seen.update(kwargs)
        return Path(out) / "quick" / "README.md"

    monkeypatch.setattr(report_module, "build_report", fake_build_report)
    class FakeClient:
        def __init__(self, address):
            self.address, self.closed = address, False

        def close(self):
            self.closed = True

    monkeypatch.setattr("phase_transition.cli._connect", FakeClient)
    code, stdout, err = _main(["report", "--quick", "--out", str(tmp_path), "--backend", "dask",
                               "--scheduler", "tcp://127.0.0.1:1"], capsys)
    assert code == 0, err
    assert seen["backend"] == "dask" and seen["scheduler"].address == "tcp://127.0.0.1:1"
    assert seen["scheduler"].closed  # the command closes the client it opened


def _perturbed(rel: float):
    import dataclasses

    def run(tasks):
        return [{**row, "value": row["value"] * (1 + rel)} for row in TOY.run(tasks)]

    return dataclasses.replace(TOY, run=run)


def test_last_bit_differences_keep_the_saved_table_and_figure(tmp_path):
    out = tmp_path / "res"
    run_experiment(TOY, out, quick=True)
    before = _snapshot(out)
    meta = json.loads((out / "toy-sweep.json").read_text())
    run_experiment(_perturbed(1e-13), out, quick=True)  # floats differ in the last bits only
    after = _snapshot(out)
    for name in ("toy-sweep.csv", "toy-sweep.png"):
        assert after[name] == before[name]
    again = json.loads((out / "toy-sweep.json").read_text())
    assert again["summary"] == meta["summary"] and again["row_runtime_s"] == meta["row_runtime_s"]
    # the mechanism's limit: a real change of the values is written
    run_experiment(_perturbed(1e-6), out, quick=True)
    assert (out / "toy-sweep.csv").read_bytes() != before["toy-sweep.csv"][0]


def test_written_files_are_ordinary_files(tmp_path):
    import os
    import stat

    run_experiment(TOY, tmp_path / "res", quick=True, cache_dir=tmp_path / "cache")
    mask = os.umask(0)
    os.umask(mask)
    files = [p for p in [*(tmp_path / "res").iterdir(), *(tmp_path / "cache").rglob("chunk-*.json")] if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask for p in files)
