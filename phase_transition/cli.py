"""The ``phase-transition`` command: a thin layer over the registry, the run path and the report.

Commands: ``list``, ``show NAME`` (grid, trials and every typed parameter with
its default, range and help; also at the end of ``run NAME --help``),
``run NAME`` and ``report`` (both through
:func:`phase_transition.pipeline.run_experiment`), and ``plot NAME --from DIR``
(the figure rebuilt from a saved table alone).

User errors (an unknown experiment, an unknown ``--set`` key, a value of the
wrong type or out of range, an unwritable ``--out``) print one line on stderr
and exit with status 2, before anything is computed.  A sweep whose every row
failed writes its table, prints one line with the count and the first error,
and exits with status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .registry import get_experiment, list_experiments

__all__ = ["main", "cli", "parse_assignments"]

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _parse_scalar(key: str, text: str, like):
    """Parse ``text`` to the type of ``like`` (bool, int, float, str)."""
    text = text.strip()
    try:
        if isinstance(like, bool):
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        raise click.UsageError(f"--set {key}: expected a value of type {type(like).__name__}, got {text!r}") from None
    return text


def parse_assignments(experiment, assignments) -> tuple[dict, dict]:
    """Split ``key=value`` strings into grid overrides (comma lists) and parameter overrides."""
    grid, params = {}, {}
    for item in assignments:
        if "=" not in item:
            raise click.UsageError(f"--set expects key=value, got {item!r}")
        key, text = (s.strip() for s in item.split("=", 1))
        if experiment.parameters is not None and key in experiment.parameters.specs():
            spec = experiment.parameters.specs()[key]
            try:
                if key in experiment.grid:
                    grid[key] = [spec.parse(part) for part in text.split(",") if part.strip()]
                    if not grid[key]:
                        raise click.UsageError(f"--set {key}: give at least one value")
                else:
                    params[key] = spec.parse(text)
            except ValueError as exc:
                raise click.UsageError(f"--set {exc}") from None
        elif key in experiment.grid:
            defaults = list(experiment.grid[key])
            # a float anywhere in the default list makes the key a float key (``[0, 0.1]``)
            like = next((v for v in defaults if isinstance(v, float)), defaults[0])
            grid[key] = [_parse_scalar(key, part, like) for part in text.split(",") if part.strip()]
            if not grid[key]:
                raise click.UsageError(f"--set {key}: give at least one value")
        elif key in experiment.params:
            params[key] = _parse_scalar(key, text, experiment.params[key])
        else:
            known = sorted(set(experiment.grid) | set(experiment.params))
            raise click.UsageError(f"--set: unknown key {key!r} for {experiment.name}; known keys: {', '.join(known)}")
    return grid, params


def _connect(address: str):
    """A ``dask.distributed.Client`` on ``address``; an unreachable scheduler is a usage error."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise click.UsageError("--backend dask needs dask.distributed: pip install 'lowdim-diffusion[distributed]'") from None
    try:
        return Client(address, timeout=10)
    except (OSError, ValueError, TypeError) as exc:
        raise click.UsageError(f"--scheduler {address}: cannot connect ({exc})".replace("\n", " ")) from None


def _experiment(name):
    try:
        return get_experiment(name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def describe_parameters(exp) -> list[str]:
    """One line per parameter of ``exp``: name, type, default (or the swept grid), allowed range, help."""
    specs = exp.parameters.specs() if exp.parameters is not None else None
    names = list(specs) if specs is not None else list(exp.grid) + list(exp.params)
    lines = []
    for name in names:
        if name in exp.grid:
            default = "grid: " + ",".join(map(str, exp.grid[name]))
            quick = exp.quick_grid[name]
            if list(quick) != list(exp.grid[name]):
                default += "; quick: " + ",".join(map(str, quick))
        else:
            default = repr(exp.params[name])
            if name in exp.quick_params:
                default += f" (quick: {exp.quick_params[name]!r})"
        if specs is not None:
            spec = specs[name]
            rng = spec.range_text()
            lines.append(f"  {name} ({spec.type_name}{'' if rng == 'any' else ', ' + rng}) = {default}"
                         + (f"  {spec.constraint.help}" if spec.constraint.help else ""))
        else:
            value = exp.grid[name][0] if name in exp.grid else exp.params[name]
            lines.append(f"  {name} ({type(value).__name__}) = {default}")
    return lines


def _show_text(exp) -> str:
    head = [f"{exp.name}: {exp.description}", "",
            f"trials: {exp.trials} (quick: {exp.quick_trials}); grid keys: {', '.join(exp.grid)}"
            + (f"; chunks by: {', '.join(exp.chunk_by)}" if exp.chunk_by else ""), "",
            "Parameters (set with --set KEY=VALUE; grid keys take comma lists):"]
    return "\n".join(head + describe_parameters(exp))


class _RunCommand(click.Command):
    """``run``: ``phase-transition run NAME --help`` also lists the parameters of NAME."""

    def parse_args(self, ctx, args):
        takes_value = {opt for p in self.params if isinstance(p, click.Option) and not p.is_flag for opt in p.opts}
        it = iter(args)
        for tok in it:
            if tok in takes_value:
                next(it, None)
            elif not tok.startswith("-"):
                ctx.meta["experiment_name"] = tok
                break
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx, formatter):
        super().format_epilog(ctx, formatter)
        name = ctx.meta.get("experiment_name")
        if name is None:
            return
        try:
            exp = get_experiment(name)
        except ValueError:
            return
        formatter.write("\n")
        formatter.write(_show_text(exp) + "\n")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Run the toolkit's registered experiments (MoLRG phase transitions, locality) and build the report."""


@cli.command("list")
def list_cmd():
    """List the registered experiments with a one-line description."""
    for exp in list_experiments():
        click.echo(f"{exp.name:22s} {exp.description}")


@cli.command("show")
@click.argument("name")
def show_cmd(name):
    """Describe experiment NAME: its grid, trials and every parameter with default, range and help."""
    click.echo(_show_text(_experiment(name)))


@cli.command("run", cls=_RunCommand)
@click.argument("name")
@click.option("--quick", is_flag=True, help="Use the experiment's small quick grid and parameters.")
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Trials per grid point (default: the experiment's).")
@click.option("--jobs", "n_jobs", type=int, default=1, show_default=True, help="Parallel chunks (-1: all cores).")
@click.option("--backend", type=click.Choice(["loky", "dask"]), default="loky", show_default=True, help="Local joblib workers or a Dask cluster.")
@click.option("--scheduler", default=None, help="Dask scheduler address (with --backend dask; default: a local cluster).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a parameter, or a grid parameter with a comma list (d=1,2,3). Repeatable.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the sweep.")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True, help="Output folder.")
@click.option("--no-cache", is_flag=True, help="Recompute every chunk and keep no cache.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_cmd(name, quick, trials, n_jobs, backend, scheduler, assignments, seed, out, no_cache, quiet):
    """Run experiment NAME and write NAME.csv, NAME.json and NAME.png into --out."""
    from .pipeline import check_plan, run_experiment

    exp = _experiment(name)
    grid, params = parse_assignments(exp, assignments)
    _check_backend(n_jobs, backend, scheduler)
    _user_errors(check_plan, exp, grid=grid, trials=trials, seed=seed, params=params, quick=quick)  # before connecting
    client = _connect(scheduler) if backend == "dask" and scheduler is not None else None
    try:
        result = _user_errors(run_experiment, exp, out, grid=grid, params=params, trials=trials, seed=seed,
                              quick=quick, n_jobs=n_jobs, backend=backend, scheduler=client,
                              cache_dir=None if no_cache else Path(out) / ".cache", progress=False if quiet else None)
    finally:
        if client is not None:
            client.close()
    if result.all_failed:
        raise click.ClickException(result.message() + f" (table written to {result.paths['csv']}, no figure)")
    click.echo(f"{result.message()}, {result.config['runtime_s']:.1f} s")
    for key, value in result.summary.items():
        click.echo(f"  {key}: {value}")
    click.echo("wrote " + ", ".join(str(p) for p in result.paths.values()))


def _check_backend(n_jobs, backend, scheduler) -> None:
    if scheduler is not None and backend != "dask":
        raise click.UsageError("--scheduler needs --backend dask")
    if n_jobs == 0 or n_jobs < -1:
        raise click.UsageError(f"--jobs must be a positive integer or -1, got {n_jobs}")


def _user_errors(fn, *args, **kwargs):
    """Call ``fn``; a run that cannot start (a bad parameter or output folder, before any work) is a usage error."""
    from .pipeline import RunError

    try:
        return fn(*args, **kwargs)
    except RunError as exc:
        raise click.UsageError(str(exc)) from None


@cli.command("report")
@click.option("--quick", is_flag=True, help="Quick grids (minutes); without it, the paper-scale grids.")
@click.option("--out", type=click.Path(file_okay=False), default="reports", show_default=True, help="Output folder.")
@click.option("--only", multiple=True, help="Only these experiments (repeatable).")
@click.option("--jobs", "n_jobs", type=int, default=1, show_default=True, help="Parallel chunks (-1: all cores).")
@click.option("--backend", type=click.Choice(["loky", "dask"]), default="loky", show_default=True,
              help="Local joblib workers or a Dask cluster (as for run).")
@click.option("--scheduler", default=None, help="Dask scheduler address (with --backend dask; default: a local cluster).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of every sweep.")
@click.option("--no-cache", is_flag=True, help="Recompute every chunk.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--readme", "readme_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Also refresh the gallery and claims table between the markers of this README.")
def report_cmd(quick, out, only, n_jobs, backend, scheduler, seed, no_cache, quiet, readme_path):
    """Run every registered experiment and write its files and README.md into --out."""
    from .report import ReportError, build_report

    names = [_experiment(n).name for n in only] if only else None
    _check_backend(n_jobs, backend, scheduler)
    client = _connect(scheduler) if backend == "dask" and scheduler is not None else None
    try:
        path = _user_errors(build_report, out, quick=quick, names=names, n_jobs=n_jobs, backend=backend,
                            scheduler=client, seed=seed, use_cache=not no_cache, progress=False if quiet else None,
                            echo=click.echo, readme_path=readme_path)
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if client is not None:
            client.close()
    click.echo(f"wrote {path}")


@cli.command("plot")
@click.argument("name")
@click.option("--from", "folder", type=click.Path(file_okay=False), required=True,
              help="Folder holding NAME.csv and NAME.json (as written by run or report).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="PNG file to write (default: NAME.png in --from).")
def plot_cmd(name, folder, out):
    """Rebuild the figure of NAME from its saved table alone (nothing is recomputed)."""
    from .pipeline import replot

    path = _user_errors(replot, _experiment(name), folder, out)
    click.echo(f"wrote {path}")


def main(argv=None) -> int:
    """Console entry point (``phase-transition``): user errors are one line on stderr and exit status 2."""
    try:
        rv = cli.main(args=argv, prog_name="phase-transition", standalone_mode=False)
    except click.exceptions.ClickException as exc:  # UsageError: status 2; other ClickExceptions: 1
        click.echo(f"phase-transition: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        # click turns Ctrl-C into Abort (the KeyboardInterrupt is its __cause__)
        if isinstance(exc, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("phase-transition: interrupted; finished chunks are cached, run again to resume", err=True)
            sys.exit(130)
        click.echo("phase-transition: aborted", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
