"""Writing a sweep's results: ``<name>.csv``, ``<name>.json``, ``<name>.png`` (and ``.parquet``)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

__all__ = ["save_results"]


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays as plain numbers and lists; anything else as text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def save_results(
    table: pd.DataFrame,
    out_dir: str | os.PathLike,
    name: str,
    *,
    figure: Any = None,
    summary: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the table as CSV (and Parquet when pyarrow is installed), its configuration as JSON, the figure as PNG.

    The JSON holds the configuration of :func:`run_grid` (experiment, grid,
    params, trials, seed, package version, runtime), the column names and the
    ``summary``. Returns the paths written, by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "json": out / f"{name}.json"}
    _atomic_write(paths["csv"], lambda p: table.to_csv(p, index=False))
    meta = {**table.attrs.get("config", {}), "columns": list(table.columns), "summary": dict(summary or {})}
    _atomic_write(paths["json"], lambda p: p.write_text(json.dumps(meta, indent=1, default=_json_default)))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pyarrow = None
    if pyarrow is not None:
        plain = table.copy()
        plain.attrs = {}
        try:
            _atomic_write(out / f"{name}.parquet", lambda p: plain.to_parquet(p, index=False))
            paths["parquet"] = out / f"{name}.parquet"
        except (pyarrow.ArrowException, TypeError, ValueError) as exc:  # e.g. a column mixing str and float
            warnings.warn(f"{name}: no Parquet file ({exc}); the CSV holds the table", RuntimeWarning, stacklevel=2)
    if figure is not None:
        paths["png"] = out / f"{name}.png"
        _atomic_write(paths["png"], lambda p: figure.savefig(p, dpi=100, format="png"))
    return paths
