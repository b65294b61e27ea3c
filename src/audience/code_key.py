"""Cache keys from code: a hash of a module's source and of every module of the package it imports, directly
or not (its import closure). A cache built by that code is rebuilt after any edit inside the closure and
kept after an edit outside it, with no hand-kept list of files.

The closure is read statically (every `import` and `from ... import` statement, function-level ones
included, resolved against the package's files); a module reached only through `importlib` or a string
would be missed (the package has none: the import contracts forbid such tricks). Third-party libraries are
not hashed: their versions belong in the environment, not in this key."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent  # src/audience


def _module_file(module: str, root: Path) -> Path | None:
    """The file of `module` ('audience.x.y') under `root` (the package's folder), or None."""
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str, root: Path) -> set[str]:
    """Modules of the package that the file imports (with each parent package, whose __init__ runs)."""
    tree = ast.parse(path.read_bytes(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)  # `from pkg import module`
    closure = set()
    for name in found:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if _module_file(prefix, root) is not None:
                closure.add(prefix)
    return closure


def import_closure(module: str, root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Every module of the package that `module` imports, directly or not, itself included: name -> file."""
    files: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        path = _module_file(name, root)
        if name in files or path is None:
            continue
        files[name] = path
        todo.extend(_imports(path, name, root) - set(files))
    return files


def code_key(*modules: str, root: Path = PACKAGE_ROOT) -> str:
    """A 10-hex-digit hash of the sources in the import closure of `modules` (names and bytes, sorted)."""
    files: dict[str, Path] = {}
    for module in modules:
        files |= import_closure(module, root)
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return digest.hexdigest()[:10]
