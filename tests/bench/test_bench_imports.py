"""Benchmark scripts share code through bench/_common.py (or a lab module), never by importing each other: a script
is a program to run, and importing one runs its top level and ties two benchmarks' settings together by accident."""

import ast
from pathlib import Path


BENCH = Path(__file__).resolve().parents[2] / "bench"
# script -> the other scripts it still imports (the GPU step-timing scripts reuse bench_scoring's shapes); none new
KNOWN = {
    "_gpu_steps.py": {"bench_inflight", "bench_scoring"},
    "bench_inflight.py": {"bench_scoring"},
    "bench_moe_targets.py": {"bench_scoring"},
}


def imported_scripts(path: Path) -> set[str]:
    scripts = {p.stem for p in BENCH.glob("bench_*.py")}
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
    return names & scripts


def test_no_bench_script_imports_another():
    found = {p.name: imported_scripts(p) for p in sorted(BENCH.glob("*.py"))}
    found = {name: scripts for name, scripts in found.items() if scripts}
    assert found == KNOWN
