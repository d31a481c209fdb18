"""The package's import graph: modules, arrows (imports between its modules, at any depth of a function), import
circles (strongly connected groups) and the largest functions. `python bench/import_graph.py [REPO_ROOT]`.

`tests/test_layout.py` fails on an upward import or a circle; this prints the numbers behind that for a note."""

import ast
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted((root / "resofilter_hf").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports (a `from pkg import name` of a module counts as that module)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            candidates = [f"{module}.{alias.name}" for alias in node.names] + [module]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for target in candidates:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target not in (name, "resofilter_hf"):
                targets.add(target)
    return targets


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v), on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def main(root: Path) -> None:
    known = modules(root)
    graph = {name: imported(name, path, known) for name, path in known.items()}
    print(f"modules {len(known)}, arrows {sum(map(len, graph.values()))}, circles {len(circles(graph))}")
    for group in circles(graph):
        print("  circle:", " <-> ".join(m.removeprefix("resofilter_hf.") for m in group))
    sizes = [
        (node.end_lineno - node.lineno + 1, f"{name.removeprefix('resofilter_hf.')}.{node.name}")
        for name, path in known.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    print("largest functions (lines):", ", ".join(f"{f} {n}" for n, f in sorted(sizes, reverse=True)[:6]))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
