"""The import layers of the code (README "Code map"): a module imports only from its own layer or
the ones below, nothing imports the package it lives in (a plugin package imports its modules),
no two modules import each other even through others, and the device never needs the converter.

Read from the source with ``ast``: every import counts, those inside functions and under
TYPE_CHECKING too, because each is a dependency someone reading or moving the code must follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Lowest first. A module's layer is that of the longest prefix naming it; a new module whose name
# no prefix covers fails ``test_every_module_has_a_layer`` and must be placed here.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation: records, time, config engine, shared checks, storage files",
        (
            "edge",
            "edge.boxes",
            "edge.checks",
            "edge.clock",
            "edge.config",
            "edge.crossing",
            "edge.detection_plan",
            "edge.integrations",
            "edge.interpreter",
            "edge.media",
            "edge.memory",
            "edge.plugins",
            "edge.preprocess",
            "edge.records",
            "edge.sd_notify",
            "edge.secrets",
            "edge.signals",
            "edge.state_files",
            "edge.state_lock",
            "edge.suppression",
            "edge.synthetic",
            "edge.window",
        ),
    ),
    (
        "models and inference",
        (
            "edge.models",
            "edge.head_pose",
            "edge.face_mesh",
            "edge.face_check",
            "edge.detector",
            "edge.attributes",
            "edge.person_detector",
            "edge.analyzer",
        ),
    ),
    (
        "pure stages and the state store",
        (
            "edge.attention",
            "edge.attribute_votes",
            "edge.tracks",
            "edge.tracker",
            "edge.viewers",
            "edge.people_config",
            "edge.privacy_config",
            "edge.people",
            "edge.people_cells",
            "edge.window_tally",
            "edge.aggregator",
            "edge.pipeline",
            "edge.state_meta",
            "edge.state_store",
        ),
    ),
    ("plugins: sources and sinks", ("edge.sources", "edge.sinks", "edge.feeds", "edge.scenes")),
    (
        "assembly: settings, checks, the daemon, evaluation, the fleet side",
        ("edge.settings", "edge.preflight", "edge.daemon", "edge.evaluation", "edge.fleet"),
    ),
    ("entry points: the CLI and its commands", ("edge.cli", "edge.commands", "edge.fleet.loadtest")),
)
FORBIDDEN_ON_DEVICE = ("edge_convert", "tensorflow")  # the device runs LiteRT alone


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "convert":
        parts[0] = "edge_convert"
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = [p for p in (REPO / "edge").rglob("*.py") if "node_modules" not in p.parts]
    files += list((REPO / "convert").rglob("*.py"))
    return {_module_name(p): p for p in files}


def _imports(path: Path, known: set[str]) -> Iterator[str]:
    """The project modules ``path`` imports (``from a.b import c`` is ``a.b.c`` when that is a module)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known or name.split(".")[0] in FORBIDDEN_ON_DEVICE:
                yield name


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # The package itself ("edge") is a module, not a prefix: every module must be placed.
            inside = module.startswith(prefix + ".") and "." in prefix
            if (module == prefix or inside) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(path, set(modules))) - {name} for name, path in modules.items()}


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in _graph() if m.startswith("edge") and not m.startswith("edge_convert") and _layer(m) is None]
    assert unplaced == [], "add each to LAYERS in tests/test_layers.py (and the README's code map)"


def test_no_module_imports_a_higher_layer_or_the_converter() -> None:
    wrong = []
    for module, deps in sorted(_graph().items()):
        if module.startswith("edge_convert"):
            continue
        mine = _layer(module)
        for dep in sorted(deps):
            if dep.split(".")[0] in FORBIDDEN_ON_DEVICE:
                wrong.append(f"{module} imports {dep}: the device must not need the converter or TensorFlow")
                continue
            theirs = _layer(dep)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{module} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[theirs][0]})")
    assert wrong == []


def test_no_module_imports_its_own_package() -> None:
    """A package's __init__ gathers its modules (a plugin package imports every one): a module that
    imported it back would run half-initialised. The root package holds only the version."""
    wrong = [
        f"{module} imports {dep}"
        for module, deps in sorted(_graph().items())
        for dep in deps
        if dep != "edge" and module.startswith(dep + ".") and _modules()[dep].name == "__init__.py"
    ]
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph.get(node, ()):
            if dep not in graph:
                continue
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_no_module_is_over_400_lines() -> None:
    """A module that grew past this holds more than one job: split it by job."""
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}
