"""The code fingerprint of an experiment: a hash of the source that computes its rows.

The sweep cache (:mod:`phase_transition.grid`) is keyed on it, so editing any
code that computes a table invalidates the cached chunks, while editing a
figure does not.

What is hashed
    The module that defines the experiment's ``run`` function, and every module
    it imports, transitively (imports anywhere in a module, also inside
    functions), restricted to the project's code: the packages ``molrg`` and
    ``locality``, the experiment modules (``phase_transition.experiments.*``)
    and, for an experiment defined outside the package (tests, user code),
    the modules of the same top-level package as its ``run``.  The sweep
    engine itself (the rest of ``phase_transition``) and third-party packages
    are not hashed; a library upgrade is covered by the package version and
    :attr:`Experiment.version <phase_transition.registry.Experiment>`.

What is not hashed (so a figure change keeps the cache)
    In the experiment's own module, the top-level definitions of its ``plot``
    and ``summarize`` functions (the enclosing top-level function of a
    closure), and every top-level function or class whose name starts with
    ``plot``, ``_plot``, ``summarize`` or ``_summarize``; imports made only
    inside those are not followed either.  Every module is hashed as its
    abstract syntax tree (``ast.dump``), so comments and formatting do not
    count; docstrings do.  Rule for authors: keep figure code in ``plot*`` /
    ``_plot*`` functions of the experiment module or in
    :mod:`phase_transition.plots`, never in helpers that ``run`` uses.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import warnings
from functools import lru_cache
from pathlib import Path

__all__ = ["code_fingerprint", "fingerprinted_modules"]

#: Top-level packages whose modules count as computing code wherever imported.
PACKAGES = ("molrg", "locality")
_ENGINE = "phase_transition"
_EXPERIMENTS = "phase_transition.experiments"
_SKIPPED_PREFIXES = ("plot", "_plot", "summarize", "_summarize")


def _counted(module: str, home: str) -> bool:
    top = module.split(".")[0]
    if module == _EXPERIMENTS or module.startswith(_EXPERIMENTS + "."):
        return True
    if top == _ENGINE:
        return False
    return top in PACKAGES or top == home


def _source_path(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # not importable (a name, not a module; or a broken parent package)
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


@lru_cache(maxsize=512)
def _parse(digest: str, text: str, skipped: tuple[str, ...]) -> tuple[str, tuple[tuple[str, int, tuple[str, ...]], ...]]:
    """(hash of the AST without the skipped top-level definitions, imports ``(module, level, names)``)."""
    with warnings.catch_warnings():  # invalid escapes in a docstring are the module author's concern
        warnings.simplefilter("ignore")
        tree = ast.parse(text)
    tree.body = [node for node in tree.body
                 if not (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                         and (node.name in skipped or node.name.startswith(_SKIPPED_PREFIXES)))]
    imports: list[tuple[str, int, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [(alias.name, 0, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.module or "", node.level, tuple(alias.name for alias in node.names)))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest(), tuple(imports)


def _resolve(module: str, level: int, names: tuple[str, ...], package: str) -> list[str]:
    if level:
        try:
            base = importlib.util.resolve_name("." * level + module, package)
        except (ImportError, ValueError):
            return []
    else:
        base = module
    out = [base]
    for name in names:  # ``from pkg import submodule``
        if name != "*":
            out.append(f"{base}.{name}")
    return out


def _walk(start: str, skipped: tuple[str, ...]) -> dict[str, str]:
    """``{module: hash}`` of ``start`` and the project modules it imports, transitively."""
    home = start.split(".")[0]
    hashes: dict[str, str] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        if module in hashes:
            continue
        path = _source_path(module)
        if path is None:
            continue
        text = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(text.encode()).hexdigest()
        is_package = path.name == "__init__.py"
        package = module if is_package else module.rpartition(".")[0]
        h, imports = _parse(digest, text, skipped if module == start else ())
        hashes[module] = h
        for mod, level, names in imports:
            for target in _resolve(mod, level, names, package):
                if target not in hashes and _counted(target, home):
                    todo.append(target)
    return hashes


def _skipped_names(experiment) -> tuple[str, ...]:
    names = []
    module = experiment.run.__module__
    for fn in (experiment.plot, experiment.summarize):
        if fn is not None and getattr(fn, "__module__", None) == module:
            names.append(getattr(fn, "__qualname__", fn.__name__).split(".")[0])
    return tuple(sorted(set(names)))


def fingerprinted_modules(experiment) -> dict[str, str]:
    """``{module name: AST hash}`` of every module in the fingerprint of ``experiment``, sorted by name."""
    run = experiment.run
    start = getattr(run, "__module__", None)
    if not start or _source_path(start) is None:  # a function defined interactively: its code object
        code = getattr(run, "__code__", None)
        return {"<run>": hashlib.sha256(repr(code.co_code if code else run).encode()).hexdigest()}
    return dict(sorted(_walk(start, _skipped_names(experiment)).items()))


def code_fingerprint(experiment) -> str:
    """A 16-hex-digit hash of the code that computes the rows of ``experiment``, and its ``version``."""
    parts = [f"{name}:{h}" for name, h in fingerprinted_modules(experiment).items()]
    parts.append(f"version:{getattr(experiment, 'version', '')}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
