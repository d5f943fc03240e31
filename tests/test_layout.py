"""The layout DESIGN.md describes, checked from the source: components share the core only, and only
the composition root (tollway/app/) wires them together; no hand-written module grows past a size a
reader can hold in mind.

Imports are read with `ast`, so every import counts: at module level, inside functions and under
`if TYPE_CHECKING:`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = "tollway"
COMPOSITION_ROOT = ("tollway", "app")
COMPONENTS = ("keymgr", "throttle", "usage", "billing", "xds", "portal")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py")
MAX_MODULE_LINES = 600


def _modules() -> Iterator[Path]:
    for package in (CORE, *COMPONENTS):
        root = REPO / package
        if root.is_dir():
            yield from sorted(root.rglob("*.py"))


def _is_generated(path: Path) -> bool:
    return path.name.endswith(GENERATED_SUFFIXES)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.lineno, node.module


def _owner(module: str) -> str | None:
    """The top-level Tollway package a module belongs to, or None for third-party and stdlib."""
    top = module.split(".", 1)[0]
    return top if top in (CORE, *COMPONENTS) else None


def _in_composition_root(path: Path) -> bool:
    return path.relative_to(REPO).parts[: len(COMPOSITION_ROOT)] == COMPOSITION_ROOT


def _is_tollway_proto(module: str) -> bool:
    """tollway.<area>.v1 is generated code, the shared wire contract: a component's own messages may
    live under the core's namespace without making the core depend on the component."""
    parts = module.split(".")
    return len(parts) >= 3 and parts[0] == CORE and parts[2] == "v1"


def layering_violations() -> list[str]:
    found = []
    for path in _modules():
        if _is_generated(path):
            continue
        own = path.relative_to(REPO).parts[0]
        for line, module in _imported(path):
            target = _owner(module)
            if target is None or target == own or _is_tollway_proto(module):
                continue
            where = f"{path.relative_to(REPO)}:{line}"
            if own == CORE and not _in_composition_root(path):
                found.append(f"{where}: the core imports component {module}")
            elif own in COMPONENTS and target in COMPONENTS:
                found.append(f"{where}: component {own} imports component {module}")
    return found


def test_core_and_components_import_only_what_the_layout_allows() -> None:
    violations = layering_violations()
    assert not violations, (
        "only tollway/app/ may import components; components share the core only:\n" + "\n".join(violations)
    )


def test_no_hand_written_module_is_too_long() -> None:
    long = [
        f"{path.relative_to(REPO)}: {lines} lines"
        for path in _modules()
        if not _is_generated(path) and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"hand-written modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)
