"""Lazy package attributes (PEP 562), shared by ``molrg`` and ``locality`` (after scientific-python's ``lazy_loader.attach``).

A package lists its public names and the submodule defining each; a name's module is
imported on first access, so ``import molrg`` or ``import locality`` loads no
submodule, and numpy code never pays for torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping


def attach(package: str, exports: Mapping[str, str], submodules: Iterable[str]) -> tuple[Callable, Callable, list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping
        Public name -> name of the submodule that defines it.
    submodules : iterable of str
        Submodules reachable as attributes (``molrg.solvers``) without an explicit import.
    """
    exports = dict(exports)
    submodules = frozenset(submodules)

    def __getattr__(name: str):
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(f".{module}", package), name)
            setattr(sys.modules[package], name, value)  # later lookups skip this hook
            return value
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports) | submodules)

    return __getattr__, __dir__, list(exports)
