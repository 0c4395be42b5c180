"""The layers README's "Where things live" draws: every import, at the top of a module or inside a
function, points to the importer's own layer or one below, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Lowest first. A module's layer is the first rule that names it; capabilities are the rest of lakecdp.
BASE = (
    "lakecdp.clock",
    "lakecdp.config",
    "lakecdp.progress",
    "lakecdp.spark",
    "lakecdp.lake",
    "lakecdp.tls",
    "lakecdp.webhooks",
    "lakecdp.cli_args",
    "lakecdp.privacy.pseudonyms",  # the keyed pseudonyms the lake adapter names customers by
)
TOP = ("lakecdp.flows", "lakecdp.observe", "lakecdp.settings_check")
RUNNERS = ("lakecdp.cli", "lakecdp.cli_scopes", "lakecdp.commands", "lakecdp.stream", "lakecdp.demo")
LAYERS = ("base", "capabilities", "models", "flows", "runners")


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer(module: str) -> str:
    if module.endswith((".commands", ".__main__")) or _under(module, RUNNERS):
        return "runners"
    if _under(module, TOP):
        return "flows"
    if _under(module, ("models",)):
        return "models"
    if _under(module, BASE):
        return "base"
    return "capabilities"


def modules() -> dict[str, Path]:
    found = {}
    for package in ("lakecdp", "models"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every absolute import of lakecdp or models in the file, lazy ones included, with its line."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("lakecdp", "models"):
                yield name, node.lineno


def graph() -> dict[str, set[str]]:
    """Module -> the lakecdp/models modules it imports (a package's own submodules not counted for its __init__)."""
    known = modules()
    edges = {}
    for module, path in known.items():
        edges[module] = {name for name, _ in imports(path) if name in known and name != module and not name.startswith(module + ".")}
    return edges


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{path.relative_to(REPO)}:{line} ({layer(module)}) imports {name} ({layer(name)})"
        for module, path in modules().items()
        for name, line in imports(path)
        if LAYERS.index(layer(name)) > LAYERS.index(layer(module)) and name not in ("lakecdp", "models")
    ]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    edges = graph()
    state: dict[str, str] = {}  # module -> "open" while on the path, "done" after
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for name in sorted(edges[module]):
            if state.get(name) == "open":
                circles.append(" -> ".join([*path[path.index(name) :], name]))
            elif name not in state:
                visit(name, [*path, name])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_layer_rules_classify_the_places_readme_names():
    assert layer("lakecdp.lake.adapter") == "base"
    assert layer("lakecdp.segments.compile") == "capabilities"
    assert layer("models.scoring") == "models"
    assert layer("lakecdp.flows.micro_batch") == "flows"
    assert layer("lakecdp.segments.commands") == layer("lakecdp.stream.job") == "runners"
