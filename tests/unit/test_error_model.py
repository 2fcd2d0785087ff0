"""One error model: every error class in shared/errors.py, no bare VisearchError raised, and each ``Raises:``
entry that names a gRPC status code names the code its error class really carries."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import grpc

from visearch.shared import errors

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = [p for folder in ("shared", "services") for p in sorted((ROOT / folder).rglob("*.py"))]
ERROR_CLASSES = {
    name: cls for name, cls in vars(errors).items() if inspect.isclass(cls) and issubclass(cls, errors.VisearchError)
}
STATUS_NAMES = {code.name for code in grpc.StatusCode}


def _trees():
    for path in RUNTIME:
        yield path.relative_to(ROOT), ast.parse(path.read_text(), filename=str(path))


def _raises_entries(doc: str):
    """(class name, entry text) for each entry of a Google-style ``Raises:`` section."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "Raises:":
            continue
        indent = None
        entry: list[str] = []
        for follow in lines[i + 1 :]:
            if not follow.strip():
                break
            depth = len(follow) - len(follow.lstrip())
            indent = depth if indent is None else indent
            if depth < indent:
                break
            if depth == indent and entry:
                yield entry[0].split(":", 1)[0].strip(), " ".join(entry)
                entry = []
            entry.append(follow.strip())
        if entry:
            yield entry[0].split(":", 1)[0].strip(), " ".join(entry)


def test_every_error_class_lives_in_errors_py():
    bases = set(ERROR_CLASSES)
    strays = [
        f"{path}:{node.lineno} {node.name}"
        for path, tree in _trees()
        if path != Path("shared/errors.py")
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(b, ast.Name) and b.id in bases or isinstance(b, ast.Attribute) and b.attr in bases
            for b in node.bases
        )
    ]
    assert not strays, f"error classes outside shared/errors.py: {strays}"


def test_no_bare_visearch_error_is_raised():
    """The base class goes out as INTERNAL (a bug); a raised error names what went wrong by its class."""
    bare = [
        f"{path}:{node.lineno}"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and isinstance(node.exc.func, ast.Name)
        and node.exc.func.id == "VisearchError"
    ]
    assert not bare, f"raise a VisearchError subclass (its code is the caller's contract): {bare}"


def test_documented_status_codes_match_the_error_classes():
    mismatches = []
    checked = 0
    for path, tree in _trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            doc = ast.get_docstring(node) or ""
            for name, text in _raises_entries(doc):
                cls = ERROR_CLASSES.get(name)
                if cls is None or cls is errors.VisearchError:
                    continue
                named = set(re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", text)) & STATUS_NAMES
                if named:
                    checked += 1
                    if cls.code.name not in named:
                        mismatches.append(
                            f"{path}:{node.lineno} {node.name}: {name} is {cls.code.name}, doc says {named}"
                        )
    assert checked > 0, "no Raises: entry names a status code: the parser is broken"
    assert not mismatches, "\n".join(mismatches)
