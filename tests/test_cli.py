"""The ``phase-transition`` command: help, list, run, report, and one-line user errors (exit status 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from toy_experiments import BROKEN_PLOT, TOY

from phase_transition.cli import cli, main
from phase_transition.registry import register


@pytest.fixture(autouse=True, scope="module")
def _toy_registered():
    register(TOY)
    register(BROKEN_PLOT)


def _main(argv, capsys) -> tuple[int, str, str]:
    """Run the console entry point in-process; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


# --------------------------------------------------------------------------- help and list
@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], ["list", "show", "run", "report", "plot"]),
        (["list"], []),
        (["run"], ["NAME", "--quick", "--trials", "--jobs", "--backend", "--scheduler", "--set", "--seed", "--out",
                   "--no-cache", "--quiet"]),
        (["report"], ["--quick", "--out", "--only", "--jobs", "--backend", "--scheduler", "--seed", "--no-cache"]),
        (["plot"], ["NAME", "--from", "--out"]),
        (["show"], ["NAME"]),
    ],
)
def test_help_is_complete(argv, expected):
    result = CliRunner().invoke(cli, argv + ["--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")
    for word in expected:
        assert word in result.output
    # every option of the command carries a help text
    command = cli if not argv else cli.commands[argv[0]]
    for param in command.params:
        if param.param_type_name == "option":
            assert param.help, f"{command.name} {param.opts} has no help"


def test_list_names_and_descriptions():
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0
    line = next(l for l in result.output.splitlines() if l.startswith("toy-sweep"))
    assert "Toy sweep used by the engine tests" in line


# --------------------------------------------------------------------------- run
def test_run_writes_table_configuration_and_figure(tmp_path, capsys):
    out = tmp_path / "res"
    code, stdout, stderr = _main(["run", "toy-sweep", "--quick", "--quiet", "--out", str(out), "--seed", "3",
                                  "--set", "scale=3", "--set", "a=1,2", "--set", "label=hello", "--trials", "2"], capsys)
    assert code == 0, stderr
    assert "toy-sweep: 8 rows, 0 failed" in stdout
    table = pd.read_csv(out / "toy-sweep.csv")
    assert list(table.columns) == ["a", "b", "trial", "seed", "value", "big", "error"]  # timings in the JSON
    assert len(table) == 2 * 2 * 2 and sorted(table["a"].unique()) == [1, 2]
    meta = json.loads((out / "toy-sweep.json").read_text())
    assert meta["experiment"] == "toy-sweep" and meta["seed"] == 3 and meta["trials"] == 2
    assert meta["grid"] == {"a": [1, 2], "b": [0.5, 1.0]}
    assert meta["params"]["scale"] == 3.0 and isinstance(meta["params"]["scale"], float)
    assert meta["params"]["label"] == "hello"
    assert meta["columns"] == list(table.columns)
    assert "version" in meta and meta["runtime_s"] >= 0 and len(meta["row_runtime_s"]) == 8
    assert meta["summary"]["rows"] == 8
    assert (out / "toy-sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / ".cache").is_dir()


def test_run_no_cache_leaves_no_cache(tmp_path, capsys):
    out = tmp_path / "res"
    code, _, stderr = _main(["run", "toy-sweep", "--quick", "--quiet", "--no-cache", "--out", str(out)], capsys)
    assert code == 0, stderr
    assert (out / "toy-sweep.csv").exists() and not (out / ".cache").exists()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
        (["run", "toy-sweep", "--quick", "--set", "zzz=1"], "unknown key 'zzz'"),
        (["run", "toy-sweep", "--quick", "--set", "scale=abc"], "expected a value of type float"),
        (["run", "toy-sweep", "--quick", "--set", "fail_on=1.5"], "expected a value of type int"),
        (["run", "toy-sweep", "--quick", "--set", "a=1,x"], "expected a value of type int"),
        (["run", "toy-sweep", "--quick", "--set", "scale=-1"], "scale must be a finite number > 0.0, got -1.0"),
        (["run", "toy-sweep", "--quick", "--set", "scale"], "key=value"),
        (["run", "toy-sweep", "--quick", "--trials", "0"], "--trials"),
        (["run", "toy-sweep", "--quick", "--jobs", "0"], "--jobs"),
        (["run", "toy-sweep", "--quick", "--backend", "spark"], "--backend"),
        (["run"], "NAME"),
        (["run", "toy-sweep", "--quick", "--scheduler", "tcp://127.0.0.1:8786"], "--scheduler needs --backend dask"),
        (["report", "--only", "no-such-experiment"], "unknown experiment"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_user_errors_are_one_line_and_status_2(argv, fragment, capsys, tmp_path):
    code, stdout, stderr = _main(argv + ["--out", str(tmp_path)] if argv[:1] == ["report"] else argv, capsys)
    assert code == 2
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    assert fragment in lines[0]
    assert "Traceback" not in stderr
    assert not list(tmp_path.iterdir())  # nothing ran


def test_console_script_reports_errors_in_one_line():
    script = Path(sys.executable).with_name("phase-transition")
    if not script.exists():
        pytest.skip("console script not installed")
    proc = subprocess.run([str(script), "run", "no-such-experiment"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "unknown experiment" in proc.stderr


def test_unreachable_scheduler_is_a_usage_error():
    """Run in a subprocess: a failed ``Client`` start leaves distributed's event loop unusable in that process."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "from phase_transition.registry import register; from toy_experiments import TOY; register(TOY); "
            "from phase_transition.cli import main; "
            "main(['run', 'toy-sweep', '--quick', '--backend', 'dask', '--scheduler', 'bogus://x'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "--scheduler bogus://x: cannot connect" in proc.stderr


# --------------------------------------------------------------------------- report
def test_report_runs_selected_experiments(tmp_path, capsys):
    code, stdout, stderr = _main(["report", "--quick", "--quiet", "--only", "toy-sweep", "--out", str(tmp_path)], capsys)
    assert code == 0, stderr
    readme = (tmp_path / "quick" / "README.md").read_text()
    assert "## toy-sweep" in readme and "![toy-sweep](toy-sweep.png)" in readme
    assert (tmp_path / "quick" / "toy-sweep.png").exists()
    assert (tmp_path / "README.md").exists()


def test_report_with_a_failing_experiment_exits_1(tmp_path, capsys):
    code, stdout, stderr = _main(["report", "--quick", "--quiet", "--only", "toy-broken-plot", "--out", str(tmp_path)],
                                 capsys)
    assert code == 1
    assert [l for l in stderr.splitlines() if l.strip()] == [stderr.strip()]
    assert "1 experiment(s) failed (toy-broken-plot)" in stderr
    assert (tmp_path / "quick" / "README.md").exists()


def test_interrupted_run_says_how_to_resume(tmp_path, capsys):
    log = tmp_path / "log"
    log.mkdir()
    (log / "crash").write_text("1 interrupt")
    argv = ["run", "toy-sweep", "--quick", "--quiet", "--out", str(tmp_path / "res"), "--set", f"log_dir={log}"]
    code, stdout, stderr = _main(argv, capsys)
    assert code == 130
    assert "interrupted" in stderr and "resume" in stderr and "Traceback" not in stderr
    (log / "crash").unlink()
    code, stdout, stderr = _main(argv, capsys)
    assert code == 0, stderr
    assert len(list(log.glob("call-*"))) == 3  # one chunk before the interrupt, two after
    assert len(pd.read_csv(tmp_path / "res" / "toy-sweep.csv")) == 18
