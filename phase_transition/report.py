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
from collections.abc import Callable, Sequence
from pathlib import Path

from .claims import CLAIMS, claims_table
from .grid import package_version
from .registry import get_experiment, list_experiments
from .results import atomic_write

__all__ = ["build_report", "update_readme", "format_value", "ReportError", "GALLERY"]

#: The main figures shown in the top-level README gallery, in order.
GALLERY = ("molrg-sgd-single", "molrg-kss", "molrg-sgd-spectral", "locality-radius", "locality-tradeoff", "cir-radius",
           "digits-union-of-subspaces", "digits-jacobian-rank", "digits-semantic-editing")

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


def _timing(cfg) -> str:
    """Compute time of the sweep's chunks (those read from the cache included), as saved in its JSON.

    Only saved, byte-stable numbers go into the README (this call's wall time
    and cache hits go to the console), so an unchanged re-run rewrites nothing.
    """
    return f"{cfg.get('compute_s', cfg.get('runtime_s', 0.0)):.1f} s of compute"


def _claim_text(exp) -> str:
    """What the paper claims: the claims of :mod:`phase_transition.claims` quoting this experiment."""
    claims = [c for c in CLAIMS if c.experiment == exp.name]
    if not claims:
        return f"**Shows.** {exp.description}."
    lines = [f"**Claim ({c.source}).** {c.statement}; tests assert: {c.tolerance}." for c in claims]
    return lines[0] if len(lines) == 1 else "\n".join("- " + line for line in lines)


def _section(exp, table, summary, mode: str, folder: Path | None = None, saved: dict | None = None) -> str:
    cfg = saved if saved is not None else table.attrs["config"]
    flag = " --quick" if mode == "quick" else ""
    seed_flag = f" --seed {cfg['seed']}" if cfg["seed"] else ""
    out_dir = (folder if folder is not None else Path("reports") / mode).as_posix()
    grid = ", ".join(f"{k} in {{{', '.join(map(str, v))}}}" if len(v) <= 10 else f"{k}: {len(v)} values from {v[0]} to {v[-1]}"
                     for k, v in cfg["grid"].items())
    lines = [
        f"## {exp.name}",
        "",
        _claim_text(exp),
        "",
        f"![{exp.name}]({exp.name}.png)" if folder is None or (folder / f"{exp.name}.png").exists() else "(no figure)",
        "",
        f"**Measured** ({cfg['trials']} trials per point; {grid}; {cfg['n_rows']} rows, {cfg['n_errors']} failed; "
        f"{_timing(cfg)}):",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {format_value(v)} |" for k, v in summary.items()]
    lines += ["", f"Regenerate: `phase-transition run {exp.name}{flag}{seed_flag} --out {out_dir}` "
              f"(table `{exp.name}.csv`, configuration and timings `{exp.name}.json`); "
              f"figure alone from the table: `phase-transition plot {exp.name} --from {out_dir}`.", ""]
    return "\n".join(lines)


def build_report(
    out: str | Path = "reports",
    *,
    quick: bool = True,
    names: Sequence[str] | None = None,
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler=None,
    seed: int = 0,
    use_cache: bool = True,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
    fail_fast: bool = False,
    readme_path: str | Path | None = None,
) -> Path:
    """Run the experiments (all registered ones, or ``names``) and write the report; returns its README path.

    Each experiment goes through :func:`phase_transition.pipeline.run_experiment`,
    the same path as ``phase-transition run``.  Every experiment's plan is
    validated, and the folder checked writable, before the first sweep starts.

    Parameters
    ----------
    out : path, default "reports"
        The report goes to ``<out>/quick`` or ``<out>/full``; the chunk cache to
        ``<out>/.cache`` (when ``use_cache``).
    quick : bool, default True
        Quick grids (tests, CI) or the paper-scale ones.
    names : list of str, optional
        Only these experiments (default: every registered one).
    n_jobs, backend, scheduler, seed, progress
        Passed to :func:`phase_transition.run_grid` (``backend="dask"`` with a
        scheduler address or ``dask.distributed.Client`` runs every sweep on
        that cluster).
    use_cache : bool, default True
        Reuse finished chunks of earlier runs.
    echo : callable, default print
        Receives one progress line per experiment.
    fail_fast : bool, default False
        Re-raise the first exception of an experiment (its sweep, figure or
        summary).  Otherwise the failure is written into its section, the other
        experiments go on, and :class:`ReportError` is raised once the README is
        written.  A sweep whose every row failed is such a failure.
    readme_path : path, optional
        Also refresh the gallery and the claims table of this README (the
        project's top-level one), see :func:`update_readme`.

    Returns
    -------
    pathlib.Path
        ``<out>/<mode>/README.md``.

    Notes
    -----
    Re-running an unchanged report rewrites no file: tables are byte-stable,
    timings are kept from the saved JSON when a table did not change, figures
    carry no metadata, and the README quotes only saved numbers.
    """
    from .pipeline import check_plan, check_writable, run_experiment

    mode = MODES[bool(quick)]
    folder = check_writable(Path(out) / mode)
    cache_dir = (Path(out) / ".cache") if use_cache else None
    exps = [get_experiment(n) for n in names] if names else list_experiments()
    for exp in exps:  # every plan validated before the first sweep
        check_plan(exp, quick=quick, seed=seed)
    sections, summaries, failures, computes, t0 = [], {}, {}, {}, time.perf_counter()
    for exp in exps:
        echo(f"[report] {exp.name} ...")
        try:
            result = run_experiment(exp, folder, quick=quick, seed=seed, n_jobs=n_jobs, backend=backend,
                                    scheduler=scheduler, cache_dir=cache_dir, progress=progress, fail_fast=fail_fast)
            if result.all_failed:
                raise RuntimeError(result.message())
        except Exception as exc:
            if fail_fast:
                raise
            failures[exp.name] = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
            echo(f"[report] {exp.name} FAILED: {failures[exp.name]}")
            sections.append("\n".join([f"## {exp.name}", "", f"**Failed:** `{failures[exp.name]}`", ""]))
            continue
        summaries[exp.name] = result.summary
        sections.append(_section(exp, result.table, result.summary, mode, folder, saved=result.saved))
        computes[exp.name] = float(result.saved.get("compute_s", result.saved.get("runtime_s", 0.0)))
        cfg = result.config
        echo(f"[report] {result.message()}, {cfg['compute_s']:.1f} s of compute, "
             f"{cfg['cached_chunks']}/{cfg['n_chunks']} chunks from the cache, {cfg['runtime_s']:.1f} s wall")
    echo(f"[report] {len(exps)} experiments in {time.perf_counter() - t0:.0f} s wall")
    if readme_path is not None:
        update_readme(readme_path, summaries, folder)
    only = "".join(f" --only {e.name}" for e in exps) if names else ""
    total = sum(computes.values())
    head = [
        f"# Report ({mode}): {total:.0f} s of compute",
        "",
        f"Regenerated by `phase-transition report{' --quick' if quick else ''}{only}{f' --seed {seed}' if seed else ''} "
        f"--out {Path(out).as_posix()}` "
        f"(`make {'report' if quick else 'report-full'}`), package version {package_version()}, seed {seed}: "
        f"{len(exps)} experiments, {total:.0f} s of compute in all "
        f"(the compute time of every chunk, those read from the cache included; one worker per chunk, "
        f"on 2 shared cores).",
        "Every number below is computed from the table next to it; the tests assert each phenomenon on the quick grids.",
        "",
        "| experiment | what it shows |",
        "|---|---|",
    ]
    head += [f"| [{e.name}](#{e.name}) | {'**failed** ' if e.name in failures else ''}{e.description} |" for e in exps]
    claims = ["## Claims", "",
              "Every result of the two papers that the toolkit checks, the tests that assert it (in `tests/`), "
              "their tolerance, and what this run measured.", "",
              claims_table(summaries, link=lambda e: f"#{e}"), ""]
    readme = folder / "README.md"
    atomic_write(readme, "\n".join(head + [""] + claims + sections))
    _write_index(Path(out))
    if failures:
        raise ReportError(readme, failures)
    return readme


def _write_index(out: Path) -> None:
    lines = ["# Reports", "", "Generated by `phase-transition report`; see the README of each mode.", ""]
    for mode, what in (("full", "paper-scale grids (`make report-full`)"), ("quick", "small grids (`make report`)")):
        if (out / mode / "README.md").exists():
            lines.append(f"- [{mode}]({mode}/README.md): {what}")
    atomic_write(out / "README.md", "\n".join(lines) + "\n")


def _replace_between(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"readme_path: no '{start}' ... '{end}' markers")
    return text[: i + len(start)] + "\n" + body.strip("\n") + "\n" + text[j:]


def update_readme(readme_path: str | Path, summaries: dict, folder: str | Path) -> Path:
    """Write the gallery (:data:`GALLERY` figures present in ``folder``) and the claims table into a README.

    The README must hold ``<!-- gallery:start -->``/``<!-- gallery:end -->`` and
    ``<!-- claims:start -->``/``<!-- claims:end -->`` markers; only the text
    between them changes.  Links are relative to the README's folder.
    """
    readme_path = Path(readme_path)
    text = readme_path.read_text()
    folder = Path(folder)
    try:
        rel = folder.resolve().relative_to(readme_path.parent.resolve()).as_posix()
    except ValueError:
        rel = folder.resolve().as_posix()
    figures = [name for name in GALLERY if (folder / f"{name}.png").exists()]
    gallery = [f"Figures of the committed report ([{rel}/README.md]({rel}/README.md)); each is regenerated by "
               "`make report-full` and explained there.", ""]
    for name in figures:
        exp = get_experiment(name)
        gallery += [f"**{exp.description}** ([details]({rel}/README.md#{name}))", "", f"![{name}]({rel}/{name}.png)", ""]
    claims = [f"Measured values are from the report in [{rel}]({rel}/README.md) (rewritten by the report; not typed by hand).",
              "", claims_table(summaries, link=lambda e: f"{rel}/README.md#{e}")]
    text = _replace_between(text, "gallery", "\n".join(gallery))
    text = _replace_between(text, "claims", "\n".join(claims))
    atomic_write(readme_path, text)
    return readme_path
