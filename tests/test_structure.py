"""The shape the code keeps: module sizes, one-way imports, engines asked by capability."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "indexing", "search", "faces_site")
MAX_LINES = 400


def _modules(*folders: str) -> list[Path]:
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "migrations" not in path.parts:
                found.append(path)
    return found


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize("path", _modules(*APPS, "bench"), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_no_code_outside_the_engines_asks_which_engine_runs():
    pattern = re.compile(
        r"""engine\.name\s*[!=]=|FACES_ENGINE["'][^)\n]*\)\s*[!=]=|FACES_ENGINE\s*[!=]="""
        r"""|[!=]=\s*["'](local|rekognition)["']"""
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _modules(*APPS) + list((ROOT / "templates").rglob("*.html"))
        if "engines" not in path.relative_to(ROOT).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_imports_run_one_way():
    """search -> indexing -> engines; accounts imports neither; engines import no pipeline or people."""
    wrong = []
    for path in _modules(*APPS):
        parts = path.relative_to(ROOT).parts
        imported = _imports(path)
        if parts[0] == "accounts":
            wrong += [(path.name, name) for name in imported if name.split(".")[0] in ("indexing", "search")]
        if parts[0] == "indexing":
            wrong += [(path.name, name) for name in imported if name.split(".")[0] == "search"]
        if parts[:2] == ("indexing", "engines"):
            wrong += [
                (path.name, name)
                for name in imported
                if name.startswith(("indexing.pipeline", "indexing.people", "indexing.imports"))
            ]
    assert wrong == []
