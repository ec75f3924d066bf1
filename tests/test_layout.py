"""The package's layout holds: folders by concern, imports running one way, downwards, and no circle.

docs/architecture.md draws the same picture; this test keeps it true.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lenet"
# Lowest first: a module may import from its own folder or from a folder before it, never after.
LAYERS = ("core", "data", "models", "runs", "training", "insight", "inference", "sweep", "")  # "": cli.py, __init__.py


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    folder = module.split(".")[1] if module.count(".") >= 1 else ""
    return LAYERS.index(folder if folder in LAYERS else "")


def imports_of(path: Path) -> set[str]:
    """Every lenet module `path` imports, at the top or inside a function, absolute or relative."""
    found = set()
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "lenet"}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "lenet":
                continue
            for alias in node.names:  # `from lenet.data import images` imports the module lenet.data.images
                sub = f"{target}.{alias.name}"
                found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists() else target)
    return found - {module_name(path)}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_sits_in_a_folder_by_concern():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "cli.py"))
    assert loose == [], f"modules outside the concern folders: {loose}"


def test_imports_run_downwards():
    upward = [f"{m} -> {t}" for m, targets in graph().items() for t in targets
              if t != "lenet" and layer(t) > layer(m)]  # fmt: skip
    upward += [f"{m} -> lenet (the package's public face)" for m, targets in graph().items()
               if "lenet" in targets and layer(m) < len(LAYERS) - 1]  # fmt: skip
    assert upward == [], "imports against the layer order " + " < ".join(LAYERS[:-1]) + ":\n" + "\n".join(upward)


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str]:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [module, target] if target in path else [module, target]
            if target not in state and (circle := visit(target, path + [module])):
                return circle
        state[module] = 2
        return []

    for module in sorted(edges):
        if module not in state and (circle := visit(module, [])):
            raise AssertionError("import circle: " + " -> ".join(circle))


def test_the_check_sees_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above would fail on a bad tree: a fake package with both faults."""
    fake = tmp_path / "lenet"
    for folder in ("core", "data"):
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "core" / "a.py").write_text("from lenet.data.b import x\n")
    (fake / "data" / "b.py").write_text("from lenet.core.a import y\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    try:
        test_imports_run_downwards()
    except AssertionError as e:
        assert "lenet.core.a -> lenet.data.b" in str(e)
    else:
        raise AssertionError("the upward import was not seen")
    try:
        test_no_import_circle()
    except AssertionError as e:
        assert "lenet.core.a" in str(e) and "lenet.data.b" in str(e)
    else:
        raise AssertionError("the circle was not seen")


def test_the_serving_side_reads_runs_through_their_format_not_the_trainer():
    """inference/ and insight/ read runs through runs/ (issue 36); of training/ they use only the evaluation
    (metrics.py: loss, accuracy, the confusion matrix), never the loop, its state, records or recipes."""
    used = sorted({f"{m} -> {t}" for m, targets in graph().items() for t in targets
                   if m.split(".")[1:2] in (["inference"], ["insight"]) and t.startswith("lenet.training")
                   and t != "lenet.training.metrics"})  # fmt: skip
    assert used == [], "\n".join(used)
