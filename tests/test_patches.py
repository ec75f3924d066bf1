"""The tests' patches of module constants reach the code: conftest's patched_functions_are_reached
counts calls of patched functions, but a constant is read, not called, so it is checked here: the
module that a test patches must still define the name and read it (a module that binds a copy with
`from module import NAME` reads the copy, which the patch does not change: patch where the code
under test reads it)."""

import importlib
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "src" / "lenet"
# monkeypatch.setattr("lenet.module.NAME", value): the form the tests use for constants
PATCHED = re.compile(r"""monkeypatch\.setattr\(\s*["'](lenet(?:\.\w+)+)\.([A-Z_][A-Z0-9_]*)["']""")


def patched_constants() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(p for p in TESTS.glob("*.py") if p.name != Path(__file__).name):
        found += [(path.name, module, name) for module, name in PATCHED.findall(path.read_text(encoding="utf-8"))]
    return found


def test_every_patched_constant_is_read_where_it_is_patched():
    constants = patched_constants()
    assert constants, "no patched constants found: the pattern no longer matches the tests"
    problems = []
    for test_file, module, name in constants:
        source = Path(importlib.import_module(module).__file__).read_text(encoding="utf-8")
        if not hasattr(importlib.import_module(module), name):
            problems.append(f"{test_file}: {module} has no {name}")
        elif len(re.findall(rf"\b{name}\b", source)) < 2:
            problems.append(f"{test_file}: {module}.{name} is defined but never read there")
    assert problems == [], "\n".join(problems)
