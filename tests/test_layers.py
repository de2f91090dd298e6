"""Imports run one way: core <- converters <- deploy <- roof, and Lava stays inside converters/ and deploy/.

Every module's imports are read with ``ast`` (every Import and ImportFrom anywhere in the file, imports inside
functions included, relative imports resolved to the installed names), so the rule holds by itself:

    roof        qsnn_lava/api.py, cli.py, __init__.py, __main__.py   (may import everything below)
    deploy      deploy/**.py      installed as qsnn_lava.deployment       (imports converters and core)
    converters  converters/**.py  installed as qsnn_lava.converters   (imports core)
    core        the other qsnn_lava/*.py                             (imports only core)

A module may import its own layer and the layers below it. ``import lava...`` (lava-nc, lava-dl) is allowed
only in converters/ and deploy/, so the core and the roof import without Lava.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "qsnn_lava"
INSTALLED = {"converters": "converters", "deploy": "deployment"}  # folder -> name inside qsnn_lava
LAYERS = ("core", "converters", "deploy", "roof")  # lowest first
ROOF = {"api", "cli", "__main__"}  # plus the package itself (qsnn_lava/__init__.py)
LAVA_ALLOWED = ("converters", "deploy")


def module_name(path: Path) -> str:
    """Installed dotted name of a source file: converters/ and deploy/ live under qsnn_lava."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in INSTALLED:
        parts[:1] = [PACKAGE, INSTALLED[parts[0]]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer of one of our modules, None for anything else (stdlib, torch, lava, ...)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1 or parts[1] in ROOF:
        return "roof"
    layers = {name: folder for folder, name in INSTALLED.items()}
    if parts[1] in layers:
        return layers[parts[1]]
    return "core"


def imported_modules(tree: ast.AST, module: str, is_package: bool, known: set) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``, relative ones resolved against ``module``.

    ``from X import name`` counts as importing ``X.name`` when that is one of our modules (``known``),
    otherwise as importing ``X``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((node.lineno, sub if sub in known else target))
    return out


def violations(sources: dict, known: set | None = None) -> list[str]:
    """Arrows against the order and Lava imports outside converters/deploy, one line each.

    ``sources``: {file label: (installed module name, is_package, source text)}."""
    known = set(known or ()) | {name for name, _, _ in sources.values()}
    found = []
    for label, (module, is_package, text) in sorted(sources.items()):
        here = layer_of(module)
        for line, target in imported_modules(ast.parse(text), module, is_package, known):
            there = layer_of(target)
            if there is not None and LAYERS.index(there) > LAYERS.index(here):
                found.append(f"{label}:{line}: {here} module {module} imports {target} ({there}); imports run "
                             f"{' <- '.join(LAYERS)}")
            if target.split(".")[0] == "lava" and here not in LAVA_ALLOWED:
                found.append(f"{label}:{line}: {here} module {module} imports {target}; Lava is imported only "
                             f"in converters/ and deploy/")
    return found


def repo_sources() -> dict:
    """Every module of the installed package: {relative path: (module name, is_package, source)}."""
    files = sorted(ROOT.glob(f"{PACKAGE}/*.py")) + sorted(ROOT.glob("converters/**/*.py")) + \
        sorted(ROOT.glob("deploy/**/*.py"))
    return {str(f.relative_to(ROOT)): (module_name(f), f.name == "__init__.py", f.read_text()) for f in files}


def test_layers_cover_every_module():
    src = repo_sources()
    by_layer = {layer: sorted(m for m, _, _ in src.values() if layer_of(m) == layer) for layer in LAYERS}
    assert "qsnn_lava.pruning" in by_layer["core"] and "qsnn_lava.metrics" in by_layer["core"]
    assert "qsnn_lava.converters.checkpoint" in by_layer["converters"]
    assert "qsnn_lava.deployment.backends.lava" in by_layer["deploy"]
    assert {"qsnn_lava", "qsnn_lava.cli"} <= set(by_layer["roof"])
    assert sum(map(len, by_layer.values())) == len(src)


def test_imports_run_one_way():
    found = violations(repo_sources())
    assert not found, "\n".join(found)


@pytest.mark.parametrize("label, module, is_package, text, want", [
    # a core module reaching up into a converter, from inside a function
    ("core.py", "qsnn_lava.pruning", False,
     "def f():\n    from qsnn_lava.converters.checkpoint import model_to_ir\n", ["core.py:2: core module"]),
    # a converter reaching the runner through a relative import
    ("conv.py", "qsnn_lava.converters.qmem_lava", False,
     "from ..deployment.backends.lava import import_lava\n", ["conv.py:1: converters module"]),
    # the core importing the roof (the package itself) and Lava
    ("c2.py", "qsnn_lava.bounds", False, "import qsnn_lava\nimport lava.magma.core\n",
     ["c2.py:1: core module", "c2.py:2: core module"]),
    # a deploy module importing the roof by a relative import from its package __init__
    ("d/__init__.py", "qsnn_lava.deployment", True, "from .. import cli\n", ["d/__init__.py:1: deploy module"]),
    # allowed: downward and sideways, relative and absolute; Lava inside deploy
    ("ok.py", "qsnn_lava.deployment.backends.lava", False,
     "from ...converters import lava_graph\nfrom .. import verify\nfrom qsnn_lava import dynamics as dyn\n"
     "import numpy\ndef f():\n    from lava.magma.core.run_configs import Loihi2SimCfg\n", []),
    ("roof.py", "qsnn_lava.api", False, "from .deployment.backends import lava\nfrom . import pruning\n", []),
])
def test_checker_catches_violations(label, module, is_package, text, want):
    """The checker itself: synthetic sources with and without arrows against the order."""
    known = {"qsnn_lava.cli", "qsnn_lava.dynamics", "qsnn_lava.pruning", "qsnn_lava.deployment.verify",
             "qsnn_lava.converters.lava_graph", "qsnn_lava.deployment.backends.lava"}
    found = violations({label: (module, is_package, text)}, known)
    assert [f[:len(w)] for f, w in zip(found, want)] == want and len(found) == len(want), found
