"""Writing and reading a sweep's results: ``<name>.csv``, ``<name>.json``, ``<name>.png`` (and ``.parquet``).

Byte-stable files
    The CSV holds the values only: the grid parameters, ``trial``, ``seed``, the
    metrics and ``error``.  Timings live in the JSON (``runtime_s``: wall time
    of the call, ``compute_s``: compute time of every chunk, ``cached_chunks``,
    ``row_runtime_s``: one number per row), never in the CSV.  When the CSV
    written equals the one already in the folder, the JSON keeps the timing
    fields already saved, and a file whose bytes would not change is not
    written at all; PNG files carry no software or date metadata.  So
    re-running an unchanged sweep (from the cache or recomputed) leaves the
    folder, and a committed report, byte-for-byte the same.

Temporary files
    Every file is written to a uniquely named temporary file in the same folder
    (:func:`tempfile.mkstemp`) and renamed into place (:func:`os.replace`), so
    concurrent writers never collide and a reader never sees half a file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["save_results", "load_results", "atomic_write", "tables_equivalent", "TIMING_KEYS", "RTOL"]

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()

#: Floats of a recomputed table within this relative tolerance of the saved ones count as unchanged.
RTOL = 1e-9

#: Configuration fields that measure time (kept from the saved JSON when the table is unchanged).
TIMING_KEYS = ("runtime_s", "compute_s", "cached_chunks", "row_runtime_s")


def atomic_write(path: str | os.PathLike, data: bytes | str) -> bool:
    """Write ``data`` to ``path`` through a unique temporary file; skip it if the file already holds it.

    Returns True when the file was written.
    """
    path = Path(path)
    data = data.encode() if isinstance(data, str) else data
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.", suffix=".part")
    try:
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; results are ordinary files (0666 minus umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def _json_default(obj: Any) -> Any:
    """Numpy scalars and arrays as plain numbers and lists; anything else as text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _csv_text(table: pd.DataFrame) -> str:
    return table.drop(columns=["runtime_s"], errors="ignore").to_csv(index=False, lineterminator="\n")


def tables_equivalent(a: pd.DataFrame, b: pd.DataFrame, rtol: float = RTOL) -> bool:
    """Whether two tables hold the same values: same columns and rows, floats within ``rtol``, the rest equal.

    ``runtime_s`` is ignored.  The tolerance absorbs the last-bit differences of
    floating-point reductions between machines and thread counts, so that a
    recomputed report does not churn the committed files.
    """
    a = a.drop(columns=["runtime_s"], errors="ignore").reset_index(drop=True)
    b = b.drop(columns=["runtime_s"], errors="ignore").reset_index(drop=True)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            try:
                xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            except (TypeError, ValueError):
                return False
            if not np.allclose(xv, yv, rtol=rtol, atol=0.0, equal_nan=True):
                return False
        elif not (x.isna().to_numpy() == y.isna().to_numpy()).all() or \
                (x[x.notna()].astype(str).to_numpy() != y[y.notna()].astype(str).to_numpy()).any():
            return False
    return True


def _saved_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
    params, trials, seed, package version, code fingerprint, timings), the
    column names and types of the CSV, the per-row ``row_runtime_s`` and the
    ``summary``.  See the module doc for what stays byte-stable.  Returns the
    paths of the files, by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "json": out / f"{name}.json"}
    csv_text = _csv_text(table)
    values = table.drop(columns=["runtime_s"], errors="ignore")
    meta = {**table.attrs.get("config", {}), "columns": list(values.columns),
            "dtypes": {c: str(t) for c, t in values.dtypes.items()}}
    if "runtime_s" in table:
        meta["row_runtime_s"] = [round(float(v), 6) for v in table["runtime_s"]]
    meta["summary"] = dict(summary or {})
    old = _saved_meta(paths["json"])
    try:
        unchanged = paths["csv"].read_text() == csv_text
    except OSError:
        unchanged = False
    if unchanged and old is not None:
        for key in TIMING_KEYS:
            if key in old:
                meta[key] = old[key]
    atomic_write(paths["csv"], csv_text)
    atomic_write(paths["json"], json.dumps(meta, indent=1, default=_json_default) + "\n")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pyarrow = None
    if pyarrow is not None:
        plain = values.copy()  # values only, like the CSV
        plain.attrs = {}
        try:
            buf = io.BytesIO()
            plain.to_parquet(buf, index=False)
            atomic_write(out / f"{name}.parquet", buf.getvalue())
            paths["parquet"] = out / f"{name}.parquet"
        except (pyarrow.ArrowException, TypeError, ValueError) as exc:  # e.g. a column mixing str and float
            warnings.warn(f"{name}: no Parquet file ({exc}); the CSV holds the table", RuntimeWarning, stacklevel=2)
    if figure is not None:
        paths["png"] = out / f"{name}.png"
        atomic_write(paths["png"], figure_bytes(figure))
    return paths


def figure_bytes(figure) -> bytes:
    """The PNG of ``figure`` (100 dpi) without software or date metadata: the same figure gives the same bytes."""
    buf = io.BytesIO()
    figure.savefig(buf, dpi=100, format="png", metadata={"Software": None})
    return buf.getvalue()


def load_results(folder: str | os.PathLike, name: str) -> tuple[pd.DataFrame, dict]:
    """Read back ``<name>.csv`` and ``<name>.json`` from ``folder``: ``(table, saved JSON)``.

    The table has its ``error`` column as text (empty for a successful row),
    ``runtime_s`` restored from the JSON when recorded there, and
    ``attrs["config"]`` set to the saved JSON.  ``FileNotFoundError`` names the
    missing file.
    """
    folder = Path(folder)
    csv, js = folder / f"{name}.csv", folder / f"{name}.json"
    for path in (csv, js):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no saved table of {name} here (run 'phase-transition run {name}' first)")
    meta = json.loads(js.read_text())
    table = pd.read_csv(csv, keep_default_na=False, na_values=[""], dtype={"error": object})
    if "error" in table:
        table["error"] = table["error"].where(table["error"].notna(), "").astype(str)
    for col, dtype in meta.get("dtypes", {}).items():
        if col in table and dtype == "bool" and table[col].notna().all():
            table[col] = table[col].astype(bool)
    runtimes = meta.get("row_runtime_s")
    if "runtime_s" not in table and runtimes is not None and len(runtimes) == len(table):
        pos = table.columns.get_loc("error") if "error" in table else len(table.columns)
        table.insert(pos, "runtime_s", runtimes)
    table.attrs["config"] = meta
    return table, meta
