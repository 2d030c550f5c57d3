"""The core is pure: no I/O, no clock, no randomness (DESIGN.md, "Sans-IO core").

Two checks: statically, no module of haredis/core imports (or calls) anything that does I/O or
reads a clock or randomness; dynamically, importing the whole core into a fresh interpreter
loads none of those modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "haredis" / "core"
CORE_MODULES = sorted(p for p in CORE.glob("*.py"))

# Top-level packages the core must never import: I/O, clocks, randomness, processes, logging.
FORBIDDEN = {
    "asyncio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "redis",
    "time",
    "random",
    "secrets",
    "uuid",
    "os",
    "sys",
    "subprocess",
    "threading",
    "multiprocessing",
    "concurrent",
    "io",
    "pathlib",
    "glob",
    "datetime",
    "logging",
    "urllib",
    "http",
    "signal",
    "shutil",
    "tempfile",
    "importlib",
    "ctypes",
}
# Builtins that do I/O or run arbitrary code.
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "compile", "__import__", "breakpoint"}

# Must never be loaded by importing the core, whatever the interpreter's startup does.
ABSENT_AFTER_IMPORT = {
    "asyncio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "redis",
    "random",
    "subprocess",
    "threading",
    "logging",
    "datetime",
    "http",
    "shutil",
    "tempfile",
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file, at any depth (functions too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against haredis.core
                base = "haredis.core" if node.level == 1 else "haredis"
                if node.module:
                    found.append((node.lineno, f"{base}.{node.module}"))
                else:  # from . import x, y: the names are modules
                    found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
            else:
                assert node.module is not None
                found.append((node.lineno, node.module))
    return found


def test_the_core_has_the_expected_modules() -> None:
    names = {p.stem for p in CORE_MODULES}
    expected = {"model", "messages", "events", "actions", "detector", "agreement", "election"}
    assert expected | {"selection", "failover", "watcher"} <= names


def test_the_checker_sees_imports_everywhere(tmp_path: Path) -> None:
    # The static check would catch an import hidden in a function, or a relative one.
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\nfrom . import events\ndef f():\n    from time import monotonic\n")
    assert [m for _, m in imported_modules(sample)] == ["os.path", "haredis.core.events", "time"]


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io_clock_or_randomness(path: Path) -> None:
    bad = [(line, mod) for line, mod in imported_modules(path) if mod.split(".")[0] in FORBIDDEN]
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_depends_only_on_the_core_within_haredis(path: Path) -> None:
    outside = [
        (line, mod)
        for line, mod in imported_modules(path)
        if mod.split(".")[0] == "haredis" and not (mod == "haredis.core" or mod.startswith("haredis.core."))
    ]
    assert outside == [], f"{path.name} reaches out of the core: {outside}"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: p.name)
def test_core_module_calls_no_io_builtins(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = [
        (node.lineno, node.func.id)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS
    ]
    assert calls == [], f"{path.name} calls {calls}"


def _modules_after(code: str) -> set[str]:
    """sys.modules of a fresh, isolated interpreter (-I: no user site, no PYTHON* env) after `code`."""
    script = (
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n{code}\nprint('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(done.stdout.split())


def test_importing_the_core_loads_no_io_modules() -> None:
    baseline = _modules_after("pass")
    after = _modules_after("import haredis.core.watcher")
    assert "haredis.core.watcher" in after and "haredis.core.detector" in after  # it did import
    tops = {m.split(".")[0] for m in after}
    assert tops & ABSENT_AFTER_IMPORT == set()
    # The rest of the forbidden list may be loaded by the interpreter's own startup (site,
    # .pth import hooks of an editable install load os, io, time, pathlib, urllib before any
    # code of ours runs); the core must not be the one that brings them in.
    new = {m.split(".")[0] for m in after - baseline}
    assert new & FORBIDDEN == set(), sorted(new & FORBIDDEN)
    # Nothing of haredis beyond the core (and the package marker) comes along.
    assert {m for m in after if m.startswith("haredis")} <= {"haredis"} | {
        f"haredis.core.{p.stem}" for p in CORE_MODULES
    } | {"haredis.core"}


def test_the_fresh_interpreter_check_would_see_an_io_import() -> None:
    # Guards the test above against passing vacuously (e.g. a broken script printing nothing).
    assert {"asyncio", "socket"} <= _modules_after("import asyncio")
