"""The rooms of the package and which may import which: an arrow never points back up.

core/ is pure (no Flask, no gevent, nothing of the service but itself); settings and paths
use only core; store/ the two of them and the app's state (extension.py, which imports no
room); realtime/ adds the store; http/ adds realtime; ops/ (serving, metrics, retention)
and the app factory and commands may use everything. Imports under ``if TYPE_CHECKING:``
are for annotations only and run never, so they are not arrows.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "notifications"

#: Room -> the rooms its modules may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "settings": {"core"},
    "paths": {"core"},
    "extension": set(),
    "store": {"core", "settings", "paths", "extension"},
    "realtime": {"core", "settings", "paths", "extension", "store"},
    "http": {"core", "settings", "paths", "extension", "store", "realtime"},
    "ops": {"core", "settings", "paths", "extension", "store", "realtime", "http"},
    "commands": {"core", "settings", "paths", "extension", "store", "realtime", "http", "ops",
                 "app"},
    "app": {"core", "settings", "paths", "extension", "store", "realtime", "http", "ops",
            "commands"},
}
#: Outside libraries a pure core module must not need.
NOT_IN_CORE = {"flask", "flask_sqlalchemy", "sqlalchemy", "gevent", "gunicorn", "werkzeug"}


def room_of(module: str) -> str:
    """The room of ``notifications.<room>...``; the package's ``__init__`` is the app factory."""
    parts = module.split(".")
    return "app" if len(parts) == 1 else parts[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):  # drop the annotation-only imports
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING",
                                                                   "typing.TYPE_CHECKING"):
            node.body = []
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            if node.module == "notifications":
                found += [(node.lineno, f"notifications.{alias.name}") for alias in node.names]
            elif node.module:
                found.append((node.lineno, node.module))
    return found


def modules() -> list[tuple[Path, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((path, ".".join(parts)))
    return out


def test_every_room_is_known() -> None:
    rooms = {room_of(module) for _, module in modules()}
    assert rooms <= set(ALLOWED), rooms - set(ALLOWED)


def test_imports_point_only_down() -> None:
    wrong = []
    for path, module in modules():
        room = room_of(module)
        for line, target in imports_of(path):
            if target != "notifications" and not target.startswith("notifications."):
                continue
            to = room_of(target)
            if to != room and to not in ALLOWED[room]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {room} -> {target}")
    assert not wrong, "\n".join(wrong)


def test_core_needs_no_framework() -> None:
    wrong = []
    for path, module in modules():
        if room_of(module) != "core":
            continue
        for line, target in imports_of(path):
            if target.split(".")[0] in NOT_IN_CORE:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {target}")
    assert not wrong, "\n".join(wrong)
