"""Cut named definitions out of Backend.AI source files, verbatim.

Backend.AI's sources use Python 3.12 syntax (``type X = ...``, PEP 695
generics), so they are parsed with ``ast`` of Python 3.12 or later; the code
cut out of them runs under any Python 3.11+ that has pydantic 2 (see
``_runtime.py``). Run as a script it reads a JSON request on stdin and writes
the answer on stdout, which is how ``_runtime.py`` uses it from an older
interpreter:

    request: [{"path": "<file>", "top": ["name", ...],
               "methods": {"ClassName": ["method", ...]}}, ...]
    answer:  [{"path": ..., "future_annotations": bool,
               "imports": [(module or null, name, asname or null, level), ...],
               "top": {"name": "<source>"},
               "methods": {"ClassName": {"method": "<source, decorators included>"}}}, ...]

A name that is not in the file is left out of the answer (the caller decides
whether that is an error). Top-level names are functions, classes and
assignments (``x = ...``, ``x: T = ...``).
"""

from __future__ import annotations

import ast
import json
import sys
import textwrap


def _segment(src: str, node: ast.AST) -> str:
    """The node's whole lines, decorators included, dedented."""
    lines = src.splitlines(keepends=True)
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return textwrap.dedent("".join(lines[first - 1 : node.end_lineno]))


def _top_names(node: ast.stmt) -> list[str]:
    match node:
        case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef():
            return [node.name]
        case ast.Assign():
            return [t.id for t in node.targets if isinstance(t, ast.Name)]
        case ast.AnnAssign(target=ast.Name(id=name)):
            return [name]
    return []


def extract_file(path: str, top: list[str], methods: dict[str, list[str]]) -> dict:
    with open(path, encoding="utf-8") as f:
        src = f.read()
    tree = ast.parse(src, filename=path)
    out: dict = {"path": path, "future_annotations": False, "imports": [], "top": {}, "methods": {}}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                out["future_annotations"] |= any(a.name == "annotations" for a in node.names)
                continue
            for a in node.names:
                out["imports"].append((node.module, a.name, a.asname, node.level))
        elif isinstance(node, ast.Import):
            for a in node.names:
                out["imports"].append((None, a.name, a.asname, 0))
        for name in _top_names(node):
            if name in top:
                out["top"][name] = _segment(src, node)
        if isinstance(node, ast.ClassDef) and node.name in methods:
            wanted = methods[node.name]
            found = {}
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in wanted:
                    found[item.name] = _segment(src, item)
            out["methods"][node.name] = found
    return out


def extract(requests: list[dict]) -> list[dict]:
    return [extract_file(r["path"], r.get("top", []), r.get("methods", {})) for r in requests]


if __name__ == "__main__":
    if sys.version_info < (3, 12):
        sys.exit("_extract.py needs Python 3.12 or later to parse Backend.AI's sources")
    json.dump(extract(json.load(sys.stdin)), sys.stdout)
