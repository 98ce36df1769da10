"""The numpy core never imports torch; the packages load lazily (issue 17 item 2)."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import locality
import molrg

ROOT = Path(__file__).resolve().parents[1]

# Modules that are torch code by design (neural networks, autograd training).  Every other
# module of the two packages is numpy code and must import without loading torch.
TORCH_MODULES = {
    "molrg.denoisers",
    "molrg.loss",
    "molrg.sgd",
    "molrg.mlp",
    "molrg.nn",
    "locality.cir_score",
}


def _modules(package) -> list[str]:
    names = [package.__name__]
    names += [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    return sorted(names)


NUMPY_MODULES = [m for m in _modules(molrg) + _modules(locality) if m not in TORCH_MODULES]

# One fresh interpreter imports the numpy modules one after the other and records, after each,
# whether torch is in sys.modules.  A module's import graph does not depend on what was
# imported before it, so "torch absent after importing X" in this sequence is the same verdict
# as in a fresh interpreter per module, at the cost of one interpreter start instead of ~30.
_PROBE = """
import sys, importlib
def torch_loaded():
    return any(m == "torch" or m.startswith("torch.") for m in sys.modules)
for name in {names!r}:
    importlib.import_module(name)
    print(name, int(torch_loaded()), flush=True)
import molrg
molrg.train_dae   # a torch-backed name: loads torch on first use
print("after-train_dae", int(torch_loaded()), flush=True)
"""


@pytest.fixture(scope="module")
def probe():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(names=NUMPY_MODULES)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(line.rsplit(" ", 1) for line in out.stdout.split("\n") if line.strip())


@pytest.mark.parametrize("name", NUMPY_MODULES)
def test_numpy_module_does_not_load_torch(name, probe):
    assert probe[name] == "0", f"importing {name} loads torch"


def test_torch_names_load_torch_on_first_use(probe):
    # switched on: the first use of a torch-backed name loads torch, and the probe sees it
    assert probe["after-train_dae"] == "1"


@pytest.mark.parametrize("package", [molrg, locality])
def test_every_public_name_resolves_and_star_import_works(package):
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    ns = {}
    exec(f"from {package.__name__} import *", ns)
    assert set(package.__all__) <= set(ns)
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018


def test_submodules_reachable_as_attributes():
    assert molrg.solvers.KSubspaces is molrg.KSubspaces
    assert molrg.utils.check_random_state is molrg.check_random_state
    assert locality.precision.band_mask is locality.band_mask


def test_utils_reexports_the_validation_helpers():
    from molrg import _validation, utils

    for name in _validation.__all__:
        assert getattr(utils, name) is getattr(_validation, name), name
