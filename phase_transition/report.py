"""The report: every registered experiment run and written into one folder with a README.

``build_report(out, quick=True)`` writes ``<out>/quick/`` (``quick=False``:
``<out>/full/``): for each experiment ``<name>.csv``, ``<name>.json`` and
``<name>.png``, and ``README.md`` embedding each figure with what the paper
claims, what this run measured (the experiment's ``summarize`` of the table,
never typed by hand) and the command that regenerates it.  ``<out>/README.md``
indexes the quick and full reports present.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from .grid import package_version, run_grid
from .registry import get_experiment, list_experiments
from .results import save_results

__all__ = ["build_report", "format_value", "ReportError"]

MODES = {True: "quick", False: "full"}


class ReportError(RuntimeError):
    """Some experiments of a report raised; the report was written without them.

    ``readme`` is the README written, ``failures`` maps each failed experiment
    to its error message.
    """

    def __init__(self, readme: Path, failures: dict[str, str]):
        self.readme, self.failures = readme, dict(failures)
        super().__init__(f"{len(failures)} experiment(s) failed ({', '.join(failures)}); "
                         f"the others are in {readme}")


def format_value(v) -> str:
    """Numbers rounded for a table (3 significant digits), everything else as text."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _section(exp, table, summary, mode: str, folder: Path | None = None) -> str:
    cfg = table.attrs["config"]
    flag = " --quick" if mode == "quick" else ""
    seed_flag = f" --seed {cfg['seed']}" if cfg["seed"] else ""
    out_dir = (folder if folder is not None else Path("reports") / mode).as_posix()
    grid = ", ".join(f"{k} in {{{', '.join(map(str, v))}}}" if len(v) <= 10 else f"{k}: {len(v)} values from {v[0]} to {v[-1]}"
                     for k, v in cfg["grid"].items())
    lines = [
        f"## {exp.name}",
        "",
        f"**Claim.** {exp.description}. {exp.doc.strip().splitlines()[0] if exp.doc.strip() else ''}".rstrip(),
        "",
        f"![{exp.name}]({exp.name}.png)" if folder is None or (folder / f"{exp.name}.png").exists() else "(no figure)",
        "",
        f"**Measured** ({cfg['trials']} trials per point; {grid}; {cfg['n_rows']} rows, {cfg['n_errors']} failed; "
        f"{cfg['runtime_s']:.1f} s):",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {format_value(v)} |" for k, v in summary.items()]
    lines += ["", f"Regenerate: `phase-transition run {exp.name}{flag}{seed_flag} --out {out_dir}` "
              f"(table `{exp.name}.csv`, configuration `{exp.name}.json`).", ""]
    return "\n".join(lines)


def build_report(
    out: str | Path = "reports",
    *,
    quick: bool = True,
    names: Sequence[str] | None = None,
    n_jobs: int = 1,
    seed: int = 0,
    use_cache: bool = True,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
    fail_fast: bool = False,
) -> Path:
    """Run the experiments (all registered ones, or ``names``) and write the report; returns its README path.

    Parameters
    ----------
    out : path, default "reports"
        The report goes to ``<out>/quick`` or ``<out>/full``; the chunk cache to
        ``<out>/.cache`` (when ``use_cache``).
    quick : bool, default True
        Quick grids (tests, CI) or the paper-scale ones.
    names : list of str, optional
        Only these experiments (default: every registered one).
    n_jobs, seed, progress
        Passed to :func:`phase_transition.run_grid`.
    use_cache : bool, default True
        Reuse finished chunks of earlier runs.
    echo : callable, default print
        Receives one progress line per experiment.
    fail_fast : bool, default False
        Re-raise the first exception of an experiment (its sweep, figure or
        summary).  Otherwise the failure is written into its section, the other
        experiments go on, and :class:`ReportError` is raised once the README is
        written.

    Returns
    -------
    pathlib.Path
        ``<out>/<mode>/README.md``.
    """
    mode = MODES[bool(quick)]
    folder = Path(out) / mode
    folder.mkdir(parents=True, exist_ok=True)
    exps = [get_experiment(n) for n in names] if names else list_experiments()
    sections, summaries, failures, t0 = [], {}, {}, time.perf_counter()
    for exp in exps:
        echo(f"[report] {exp.name} ...")
        try:
            table = run_grid(exp, quick=quick, seed=seed, n_jobs=n_jobs,
                             cache_dir=(Path(out) / ".cache") if use_cache else None, progress=progress)
            config = table.attrs["config"]
            figure = exp.plot(table, config) if exp.plot is not None else None
            summary = exp.summarize(table, config) if exp.summarize is not None else {}
            save_results(table, folder, exp.name, figure=figure, summary=summary)
        except Exception as exc:
            if fail_fast:
                raise
            failures[exp.name] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
            echo(f"[report] {exp.name} FAILED: {failures[exp.name]}")
            sections.append("\n".join([f"## {exp.name}", "", f"**Failed:** `{failures[exp.name]}`", ""]))
            continue
        summaries[exp.name] = summary
        sections.append(_section(exp, table, summary, mode, folder))
        echo(f"[report] {exp.name}: {config['n_rows']} rows in {config['runtime_s']:.1f} s")
    total = time.perf_counter() - t0
    only = "".join(f" --only {e.name}" for e in exps) if names else ""
    head = [
        f"# Report ({mode})",
        "",
        f"Regenerated by `phase-transition report{' --quick' if quick else ''}{only}{' --seed %d' % seed if seed else ''} "
        f"--out {Path(out).as_posix()}` "
        f"(`make {'report' if quick else 'report-full'}`), package version {package_version()}, seed {seed}: "
        f"{len(exps)} experiments in {total:.0f} s.",
        "Every number below is computed from the table next to it; the tests assert each phenomenon on the quick grids.",
        "",
        "| experiment | what it shows |",
        "|---|---|",
    ]
    head += [f"| [{e.name}](#{e.name}) | {'**failed** ' if e.name in failures else ''}{e.description} |" for e in exps]
    readme = folder / "README.md"
    readme.write_text("\n".join(head + [""] + sections))
    _write_index(Path(out))
    if failures:
        raise ReportError(readme, failures)
    return readme


def _write_index(out: Path) -> None:
    lines = ["# Reports", "", "Generated by `phase-transition report`; see the README of each mode.", ""]
    for mode, what in (("full", "paper-scale grids (`make report-full`)"), ("quick", "small grids (`make report`)")):
        if (out / mode / "README.md").exists():
            lines.append(f"- [{mode}]({mode}/README.md): {what}")
    (out / "README.md").write_text("\n".join(lines) + "\n")
