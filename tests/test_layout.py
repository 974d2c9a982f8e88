"""The tree's map (docs/architecture.md) holds: each folder imports only what its role allows, nothing outside
``streams/compat`` patches a client library, and no product module grows past 600 lines.

The rules are data (``ALLOWED``) so the test and the document say the same thing; the document's table is checked
against the folders that exist, so a new folder cannot appear without a row saying what it may import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLIENT_LIBRARIES = ("faust", "aiokafka", "mode", "kafka")
MAX_LINES = 600

#: Which of our packages each part may import directly (a package always may import itself).
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "streams": set(),
    "streams.compat": set(),
    "streams.runtime": {"models", "streams.compat"},
    "streams.serve": {"models", "streams.runtime"},
    "streams.worker": {"models", "streams.compat", "streams.runtime", "streams.serve"},
    "streams.tools": {"models", "monitoring", "streams.compat", "streams.runtime", "streams.serve", "streams.worker"},
    "monitoring": {"models", "streams.serve"},
}
OURS = ("models", "streams", "monitoring")


def _part(module: str) -> str:
    for part in sorted(ALLOWED, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    raise AssertionError(f"{module} belongs to no part of the map in docs/architecture.md")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for root in OURS:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            name = ".".join(rel.parts).removesuffix(".__init__")
            out.append((name, path))
    return out


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}  # ``from streams import metrics`` imports a module
    return found


MODULES = _modules()


def test_every_module_belongs_to_a_part_of_the_map():
    assert MODULES
    for name, _ in MODULES:
        _part(name)


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_follow_the_map(name, path):
    part = _part(name)
    allowed = ALLOWED[part] | {part}
    for mod in _imports(name, path):
        if mod.split(".")[0] not in OURS or mod in OURS:
            continue
        try:
            target = _part(mod)
        except AssertionError:
            continue  # ``from streams.serve import metrics`` also yields ``streams.serve.metrics.X`` names
        assert target in allowed, f"{name} imports {mod}: {part} may import only {sorted(allowed)}"


def test_models_import_nothing_of_the_runtime():
    for name, path in MODULES:
        if _part(name) != "models":
            continue
        roots = {m.split(".")[0] for m in _imports(name, path)}
        assert roots.isdisjoint({"streams", "monitoring", "prometheus_client", "aiohttp", *CLIENT_LIBRARIES}), name


def _library_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names
                      if a.name.split(".")[0] in CLIENT_LIBRARIES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in CLIENT_LIBRARIES:
            names |= {a.asname or a.name for a in node.names}
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _reaches_private(node: ast.AST, own: frozenset[str] = frozenset()) -> bool:
    """Whether ``node`` reads a private attribute of an object that is not ours (``self``, ``cls``, a class or
    function of this module)."""
    return any(isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
               and _root(n) not in own for n in ast.walk(node))


def patches_in(source: str) -> list[str]:
    """Assignments onto a client library's modules or classes, or onto objects reached through a private attribute
    (``app.consumer._thread.seek = ...``, or ``thread = app.consumer._thread`` then ``thread.seek = ...``): the
    shapes every patch of a library's internals takes here. ``self`` and ``cls`` are our own objects."""
    tree = ast.parse(source)
    libs = _library_names(tree)
    own = frozenset({"self", "cls"} | {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))})
    # ``thread = app.consumer._thread``: a name bound to another library's private object (not to the result of a
    # call, which is how our own private helpers hand out our own objects).
    reached = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Attribute) and _reaches_private(node.value, own)
               for t in node.targets if isinstance(t, ast.Name)}
    found: list[str] = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
            targets = [ast.Attribute(value=node.args[0], attr="?", ctx=ast.Store())]
        for t in targets:
            if not isinstance(t, ast.Attribute):
                continue
            root = _root(t)
            if root in ("self", "cls"):
                continue
            if root in libs or root in reached or (not isinstance(t.value, ast.Call)
                                                   and _reaches_private(t.value, own)):
                found.append(f"line {node.lineno}: {ast.unparse(t)}")
    return found


def test_the_patch_finder_finds_patches():
    assert patches_in("import aiokafka.conn as c\nc.AIOKafkaConnection.send = f\n")
    assert patches_in("import faust\ndef f(app):\n    app.consumer._thread.seek = g\n")
    assert patches_in("from faust import App\nsetattr(App, 'x', 1)\n")
    assert patches_in("def f(app):\n    thread = app.consumer._thread\n    thread.seek_to_committed = g\n")
    assert not patches_in("class A:\n    def f(self):\n        self._x = 1\n")
    assert not patches_in("def f(view):\n    view.total = 1\n")


@pytest.mark.parametrize("module", ["offsets.py", "pacing.py", "repairs.py"])
def test_the_patch_finder_sees_each_compat_module_patch(module):
    assert patches_in((REPO / "streams" / "compat" / module).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_only_compat_patches_client_libraries(name, path):
    if _part(name) == "streams.compat":
        return
    assert patches_in(path.read_text(encoding="utf-8")) == [], f"{name} patches a library outside streams/compat"


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_no_product_module_over_600_lines(name, path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines; split it along a seam (docs/architecture.md)"


def test_the_documented_map_matches_the_tree():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_/]+)/` \| [^|]+ \| ([^|]+) \|", doc, re.M))
    folders = {"models", "monitoring"} | {f"streams/{p.name}" for p in (REPO / "streams").iterdir()
                                          if p.is_dir() and (p / "__init__.py").exists()}
    assert set(rows) == folders, "docs/architecture.md must have one row per folder"
    for folder, may in rows.items():
        documented = set(re.findall(r"`([a-z_.]+)`", may))
        assert documented == ALLOWED[folder.replace("/", ".")], f"{folder}: the document says {sorted(documented)}"
