"""The picture in ``docs/architecture.md`` is true: who may import whom, read from the source with ``ast``.

Layers, bottom to top::

    errors  <  core  <  viz, tasks  <  attention, attribution, patching, circuits, probes  <  zoo, report, cli

A package imports only from the layers below it and from itself; the method families import
only ``core``, ``viz`` and ``errors`` (circuits may also call patching's public API:
``from mechinterp.patching import <a name in patching.__all__>``; explain calls attribution's, and
dictionary's feature-level methods call patching's, lens's and features' public APIs). Every import counts,
including the ones inside functions (a function-level import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mechinterp"
FAMILIES = ("attention", "attribution", "patching", "circuits", "probes", "lens", "features", "explain", "influence", "dictionary")
BASE = {"errors", "core", "viz"}
#: family -> the other families whose public API (names in their ``__all__``) it may call
PUBLIC_API_USES: dict[str, tuple[str, ...]] = {
    "circuits": ("patching",),
    "explain": ("attribution",),
    "dictionary": ("patching", "lens", "features"),  # feature patching, latent steering / DLA, dashboards
}

#: package (or top-level module) -> the packages it may import besides itself.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "core": {"errors"},
    "viz": {"errors", "core"},
    "tasks": {"errors", "core"},
    **{family: set(BASE) for family in FAMILIES},
    "zoo": {"errors", "core", "viz", "tasks", *FAMILIES},
    "report": {"errors", "core", "viz", "tasks", "zoo", "mechinterp", *FAMILIES},
    "cli": {"errors", "core", "viz", "tasks", "zoo", "report", "mechinterp", *FAMILIES},
    "metrics": {"core"},  # mechinterp.metrics: a public alias of core.metrics
    "testing": {"core"},
    "__init__": {"errors", "core", "tasks", "zoo", "metrics"},
    "__main__": {"cli"},
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        out.append((".".join(parts), file))
    return out


def _imports(module: str, file: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, imported module, imported names)`` for every mechinterp import in ``file``."""
    package = module if file.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "mechinterp"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "mechinterp":
                found.append((node.lineno, target, [a.name for a in node.names]))
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mechinterp"


def _targets(target: str, names: list[str]) -> list[str]:
    """The modules an import statement depends on (``from mechinterp import tasks`` -> ``mechinterp.tasks``)."""
    if target != "mechinterp" or not names:
        return [target]
    subpackages = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    return [f"mechinterp.{n}" if n in subpackages else "mechinterp" for n in names]


def _public(family: str = "patching") -> set[str]:
    """The names in ``mechinterp.<family>.__all__``."""
    tree = ast.parse((PACKAGE / family / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def _violations() -> list[str]:
    bad = []
    public = {layer: _public(layer) for uses in PUBLIC_API_USES.values() for layer in uses}
    for module, file in _modules():
        source = _layer(module)
        allowed = ALLOWED.get(source)
        assert allowed is not None, f"{module}: a new package; give it a layer in ALLOWED and in docs/architecture.md"
        for line, target, names in _imports(module, file):
            for dep in _targets(target, names):
                layer = _layer(dep)
                where = f"{module}:{line} imports {dep}"
                if layer == source:
                    continue
                if layer in PUBLIC_API_USES.get(source, ()):
                    if dep != f"mechinterp.{layer}" or not set(names) <= public[layer]:
                        bad.append(f"{where} {names}: {source} may use only {layer}'s public API (mechinterp.{layer})")
                    continue
                if layer not in allowed:
                    bad.append(f"{where}: {source} may import only {sorted(allowed) or 'nothing from mechinterp'}")
    return bad


def _private_imports() -> list[str]:
    bad = []
    for module, file in _modules():
        for line, target, names in _imports(module, file):
            private_module = [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
            private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private_module or private_names:
                bad.append(f"{module}:{line} imports {target} {names}")
    return bad


def test_every_package_imports_only_the_layers_below_it():
    assert _violations() == []


def test_no_private_name_is_imported_across_modules():
    assert _private_imports() == []


def test_core_and_tasks_never_import_zoo_or_a_family():
    for module, file in _modules():
        if _layer(module) in ("core", "tasks", "errors"):
            deps = {_layer(d) for _, t, names in _imports(module, file) for d in _targets(t, names)}
            assert not deps & {"zoo", "report", "cli", "mechinterp", *FAMILIES}, (module, deps)


def test_the_package_never_switches_the_matplotlib_backend():
    offenders = [str(f) for _, f in _modules() if re.search(r"matplotlib\.use\(|\buse\(\s*['\"]Agg", f.read_text())]
    assert offenders == []


@pytest.mark.parametrize(
    ("module", "source", "expect"),
    [
        ("mechinterp.core.x", "from mechinterp.zoo import load_model\n", "core may import only"),
        ("mechinterp.tasks.x", "def f():\n    from mechinterp import zoo\n", "tasks may import only"),
        ("mechinterp.probes.x", "from mechinterp.patching import activation_patch\n", "probes may import only"),
        ("mechinterp.circuits.x", "from mechinterp.patching.engine import run\n", "public API"),
        ("mechinterp.circuits.x", "from mechinterp.patching import activation_patch\n", None),
        ("mechinterp.dictionary.x", "from mechinterp.features import max_activating_examples\n", None),
        ("mechinterp.dictionary.x", "from mechinterp.lens.readout import answer_ids\n", "public API"),
        ("mechinterp.lens.x", "from mechinterp.dictionary import splice\n", "lens may import only"),
        ("mechinterp.attention.x", "from mechinterp.viz import heatmap\n", None),
    ],
)
def test_the_checker_catches_what_it_should(tmp_path, monkeypatch, module, source, expect):
    """The checker itself: a core module importing zoo, a function-level import, a reach into internals."""
    file = tmp_path / "x.py"
    file.write_text(source)
    monkeypatch.setattr(f"{__name__}._modules", lambda: [(module, file)])
    found = _violations()
    assert (found == []) if expect is None else (len(found) == 1 and expect in found[0]), found


def test_the_architecture_picture_names_every_package_and_its_layer():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    picture = doc.split("```")[1]
    rows: dict[str, str] = {}  # layer number -> its lines (a layer may take several)
    for line in picture.splitlines():
        if line.strip().startswith("layer"):
            rows[line.split()[1]] = rows.get(line.split()[1], "") + re.sub(r"\(.*?\)", "", line)
    layer_of = {}
    for number, line in rows.items():
        for package in ALLOWED:
            if re.search(rf"\b{re.escape(package)}/?\b", line) and not package.startswith("__"):
                layer_of.setdefault(package, int(number))
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} | {"errors"}
    assert packages <= set(layer_of), f"missing from the picture: {packages - set(layer_of)}"
    for package in packages:  # what a package may import sits on a lower layer of the picture
        below = {d for d in ALLOWED[package] if d in packages}
        assert all(layer_of[d] < layer_of[package] for d in below), (package, below, layer_of)
