"""Shared settings of the demos: where figures go, and whether to run the smallest setting.

``DEMO_QUICK=1`` selects the smallest setting (the test suite uses it);
``DEMO_OUT`` is the folder for figures (default ``demos/figures``).
"""

import os
from pathlib import Path

QUICK = os.environ.get("DEMO_QUICK", "0") not in ("", "0", "false", "False")
OUT = Path(os.environ.get("DEMO_OUT", Path(__file__).resolve().parent / "figures"))


def save(fig, name: str) -> Path:
    """Save ``fig`` as ``OUT/name.png`` and return the path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path}")
    return path
