"""The shape of the house: imports go one way between packages, and no modules import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("data", "evaluation", "baselines", "condense", "leaderboard", "bench")
#: Which packages each package may import (ARCHITECTURE.md); leaderboard only data's file formats.
ALLOWED = {
    "data": set(),
    "evaluation": {"data"},
    "baselines": {"data", "evaluation"},
    "condense": {"data", "evaluation"},
    "leaderboard": {"data.files", "data.setfile", "data.untrusted"},
    "bench": {"data", "evaluation", "baselines", "condense", "leaderboard"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, at any depth of the file (lazy imports too)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {name for name in found if name in modules and name != this}


def test_packages_import_only_downwards():
    modules = project_modules()
    for name, path in modules.items():
        package = name.split(".")[0]
        for imported in imports_of(path, modules):
            target = imported.split(".")[0]
            if target == package:
                continue
            allowed = ALLOWED[package]
            assert target in allowed or imported in allowed, f"{name} imports {imported}"


def test_no_modules_import_each_other():
    modules = project_modules()
    graph = {name: imports_of(path, modules) for name, path in modules.items()}
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for name in graph:
        if name not in index:
            visit(name)
    assert not circles, f"modules importing each other: {circles}"


def test_importing_the_library_loads_no_application():
    code = "import condense, baselines, sys; print(sorted({'hydra', 'leaderboard', 'bench'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
