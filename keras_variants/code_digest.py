"""Digests of the code behind a result, derived from what that code imports.

A key that must change whenever the code computing a result changes (a trial's key, the
gate's remembered scores, a cached data check, an up-to-date report) names the module that
computes the result; :func:`code_digest` covers that module and every module of this
project it imports, directly or not, found by reading import statements (nothing is
imported). A module added on the path is covered without anyone updating a list.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

PROJECT_PACKAGES = ("keras_variants", "flows", "tasks", "data_checks")


@functools.cache
def project_roots() -> dict[str, Path]:
    """Each installed project package's folder."""
    roots = {}
    for name in PROJECT_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            roots[name] = Path(spec.origin).parent
    return roots


def module_file(module: str, roots: Mapping[str, Path]) -> Path | None:
    """The source file of ``module`` if it is one of the project's, else None."""
    top, *rest = module.split(".")
    if top not in roots:
        return None
    base = roots[top].joinpath(*rest)
    if rest and base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return base / "__init__.py" if (base / "__init__.py").is_file() else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[str]:
    """Names of the modules imported anywhere under ``node`` (inside functions too: lanes
    import the TensorFlow code on use), except under ``if TYPE_CHECKING:``, which never
    runs. ``from a import b`` yields ``a`` and ``a.b`` (b may be a module)."""
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.orelse:
            yield from _imports(child)
        return
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        yield node.module
        yield from (f"{node.module}.{alias.name}" for alias in node.names)
    for child in ast.iter_child_nodes(node):
        yield from _imports(child)


def import_closure(*modules: str, roots: Mapping[str, Path] | None = None) -> list[str]:
    """``modules``, every project module they import, directly or not, and the packages
    that hold them (their ``__init__`` runs on import), sorted."""
    roots = project_roots() if roots is None else roots
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = module_file(module, roots)
        if path is None:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _imports_of(path)
    return sorted(seen)


def _imports_of(path: Path) -> tuple[str, ...]:
    """What the file imports, parsed once per version of the file in a process (a run
    computes the keys of every trial, cached task and report from the same files)."""
    stat = path.stat()
    with _PARSING:
        return _parsed_imports(str(path), stat.st_mtime_ns, stat.st_size)


# One parse at a time: CPython 3.11's ast.parse fails in two threads at once ("AST
# constructor recursion depth mismatch"), and task threads compute keys side by side.
_PARSING = threading.Lock()


@functools.lru_cache(maxsize=1024)
def _parsed_imports(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    return tuple(_imports(ast.parse(Path(path).read_bytes(), path)))


def code_digest(*modules: str, roots: Mapping[str, Path] | None = None) -> str:
    """SHA-256 of the names and source files of ``modules``' :func:`import_closure`."""
    roots = project_roots() if roots is None else roots
    digest = hashlib.sha256()
    for module in import_closure(*modules, roots=roots):
        digest.update(module.encode() + b"\0" + module_file(module, roots).read_bytes())
    return digest.hexdigest()
