"""The package's import graph in numbers: modules, arrows (imports between its modules, in functions too), import
circles and the largest functions, of this checkout or another (`python bench/import_graph.py [REPO_ROOT]`).

The readers are the layout test's own (`tests/test_layout.py`, which fails on a circle or an upward import), pointed
at `REPO_ROOT/resofilter_hf`; this prints the numbers behind that test for a note."""

import ast
import importlib.util
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parents[1]


def layout_readers(package: Path):
    """tests/test_layout.py as a module, reading `package` instead of this checkout's."""
    spec = importlib.util.spec_from_file_location("layout_readers", HERE / "tests" / "test_layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.PACKAGE = package
    return module


def main(root: Path) -> None:
    layout = layout_readers(root / "resofilter_hf")
    modules = layout._modules()
    graph = layout._import_graph(modules)
    circles = layout._circles(graph)
    print(f"modules {len(modules)}, arrows {sum(map(len, graph.values()))}, circles {len(circles)}")
    for group in circles:
        print("  circle:", " <-> ".join(group))
    sizes = [
        (node.end_lineno - node.lineno + 1, f"{name}.{node.name}")
        for name, path in modules
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    print("largest functions (lines):", ", ".join(f"{f} {n}" for n, f in sorted(sizes, reverse=True)[:6]))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
