"""The house rules of the tree (docs/architecture.md, "Layout"), read from the code's own imports.

- ``notifier/`` root holds only the process wiring; every other module lives
  in a package named for its domain, with a docstring saying what it holds
  and what it may import.
- Imports point one way: no two rooms (a package, or a root module) import
  each other, directly or round a loop, and no flow or domain imports a way in.
- ``channels/`` never imports ``notifier``.
- The layout in docs/architecture.md names every package and every root module.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "notifier"

WIRING = {
    "__init__.py",
    "__main__.py",
    "app.py",  # the HTTP process: the API's routers and the web pages on one app
    "db.py",
    "embedded.py",
    "models.py",  # the table registry
    "runtime.py",
    "settings.py",
    "producer.py",  # a deprecated alias of ingest/producer.py, for the billing side's old import
}
WAYS_IN = {"api", "web", "cli", "worker", "ingest", "app.py", "embedded.py", "__main__.py"}
# Rooms that may import a way in: the ways in themselves, and the wiring that mounts them.
MOUNTERS = WAYS_IN | {"producer.py"}


def _room(module: str) -> str | None:
    """The room of a dotted module name: ``notifier.flows.deliver`` → ``flows``."""
    parts = module.split(".")
    if parts[0] == "channels":
        return "channels"
    if parts[0] != "notifier":
        return None
    if len(parts) == 1:
        return "notifier"
    return parts[1] if (PACKAGE / parts[1]).is_dir() else f"{parts[1]}.py"


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _edges() -> dict[str, dict[str, set[str]]]:
    """room → imported room → the files that import it."""
    edges: dict[str, dict[str, set[str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "migrations" and len(relative.parts) > 2:
            continue  # migration scripts are history, written against the tree of their day
        room = relative.parts[0] if len(relative.parts) > 1 else relative.name
        for module in _imports(path):
            target = _room(module)
            if target and target not in (room, "notifier"):
                edges.setdefault(room, {}).setdefault(target, set()).add(str(relative))
    return edges


def _loops(edges: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components of more than one room (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(room: str) -> None:
        index[room] = low[room] = len(index)
        stack.append(room)
        for target in edges.get(room, {}):
            if target not in index:
                visit(target)
                low[room] = min(low[room], low[target])
            elif target in stack:
                low[room] = min(low[room], index[target])
        if low[room] == index[room]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == room:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for room in list(edges):
        if room not in index:
            visit(room)
    return found


def test_the_root_holds_only_the_wiring() -> None:
    loose = {path.name for path in PACKAGE.glob("*.py")}
    assert loose <= WIRING, (
        f"move {sorted(loose - WIRING)} into the package of its domain "
        "(docs/architecture.md, Layout); the root is for the process wiring only"
    )


def _packages() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.iterdir()
        if path.is_dir() and path.name != "__pycache__" and any(path.glob("*.py"))
    )


@pytest.mark.parametrize("package", _packages(), ids=lambda path: path.name)
def test_every_package_says_what_it_holds_and_may_import(package: Path) -> None:
    init = package / "__init__.py"
    assert init.exists(), f"{package.name}/ has no __init__.py"
    docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert docstring, f"{package.name}/__init__.py has no docstring"
    assert len(docstring.split()) >= 25, f"{package.name}/__init__.py: a one-line docstring"
    assert re.search(r"\bimport", docstring, flags=re.IGNORECASE), (
        f"{package.name}/__init__.py does not say what the package may import"
    )


def test_no_two_rooms_import_each_other() -> None:
    edges = _edges()
    loops = _loops(edges)
    detail = [
        f"{room} -> {target} ({', '.join(sorted(files))})"
        for loop in loops
        for room in loop
        for target, files in sorted(edges.get(room, {}).items())
        if target in loop
    ]
    assert not loops, "imports run back up:\n" + "\n".join(detail)


def test_flows_and_domains_never_import_a_way_in() -> None:
    wrong = [
        f"{room} -> {target} ({', '.join(sorted(files))})"
        for room, targets in _edges().items()
        if room not in MOUNTERS
        for target, files in targets.items()
        if target in WAYS_IN
    ]
    assert not wrong, "a way in is imported from below:\n" + "\n".join(wrong)


def test_channels_never_import_notifier() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "channels").rglob("*.py")
        for module in _imports(path)
        if module.split(".")[0] == "notifier"
    ]
    assert not wrong, "channels/ must know nothing of notifier/:\n" + "\n".join(wrong)


def test_the_architecture_page_layout_names_every_room() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    layout = page.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\s{2}(\S+)", layout, flags=re.MULTILINE))
    rooms = {f"{path.name}/" for path in _packages()}
    rooms |= {path.name for path in PACKAGE.glob("*.py")} - {"__init__.py"}
    missing = sorted(room for room in rooms if not any(room in entry for entry in named))
    assert not missing, f"docs/architecture.md, Layout: no line for {missing}"
