"""The package's shape: imports point one way (no cycles, none from a higher floor), and no module over 300 lines.

Every import counts, function-level ones included: a cycle hidden in a function still couples the modules.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "umop_yolo"
MAX_LINES = 300
# Floors, lowest first: a module may import its own floor and those below. The longest matching prefix decides.
# The package itself is on top: its lazy `from umop_yolo import UmopYOLO` (PEP 562) reaches the engine, and no module
# of the package imports it; a module missing here falls under it, so anything below that imports it fails.
FLOORS = {
    "umop_yolo": 5,
    "umop_yolo.errors": 0, "umop_yolo.offline": 0, "umop_yolo.atomic": 0, "umop_yolo.distributed": 0,  # core
    "umop_yolo.pfl": 0, "umop_yolo.settings": 0, "umop_yolo.cfg": 0,
    "umop_yolo.nn": 1,
    "umop_yolo.data": 2, "umop_yolo.eval": 2,
    "umop_yolo.engine": 3,
    "umop_yolo.diagnostics": 4, "umop_yolo.ablate": 4,
    "umop_yolo.cli": 5, "umop_yolo.help": 5,
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its __init__.py)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file: `from a import b` counts as a.b when b is a
    module, else as a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def floor(module: str) -> int:
    prefix = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len, default=None)
    assert prefix is not None, f"{module} has no floor: add it to FLOORS"
    return FLOORS[prefix]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "umop_yolo"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "engine" / "__init__.py").write_text("from . import model\n")
    (pkg / "engine" / "model.py").write_text("def f():\n    from umop_yolo.engine import trainer\n")
    (pkg / "engine" / "trainer.py").write_text("from .model import f\nimport umop_yolo.cli\n")
    (pkg / "cli.py").write_text("")
    modules = {"umop_yolo.engine", "umop_yolo.engine.model", "umop_yolo.engine.trainer", "umop_yolo.cli"}
    graph = {m: imported_modules(m, pkg / (m.split(".", 1)[1].replace(".", "/") + ".py"), modules)
             for m in modules - {"umop_yolo.engine"}}
    graph["umop_yolo.engine"] = imported_modules("umop_yolo.engine", pkg / "engine" / "__init__.py", modules)
    assert graph == {"umop_yolo.engine": {"umop_yolo.engine.model"},
                     "umop_yolo.engine.model": {"umop_yolo.engine.trainer"},
                     "umop_yolo.engine.trainer": {"umop_yolo.engine.model", "umop_yolo.cli"},
                     "umop_yolo.cli": set()}
    assert cycles(graph) == [["umop_yolo.engine.model", "umop_yolo.engine.trainer"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_import_from_a_higher_floor():
    upward = sorted(f"{a} (floor {floor(a)}) imports {b} (floor {floor(b)})"
                    for a, imports in import_graph().items() for b in imports if floor(b) > floor(a))
    assert upward == []


def test_no_module_over_300_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
