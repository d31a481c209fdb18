"""The package's layers, read from the source (ast, nothing imported): imports run one way.

engine <- config / trainer / selection / provenance <- hub <- toy / evaluation <- experiments <- jobs / cli.
A module may import from its own layer or a lower one; `resofilter_hf/__init__.py` (the lazy facade) is exempt.
"""

import ast
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parents[1] / "resofilter_hf"
LAYERS = {  # first dotted part under resofilter_hf -> layer
    "engine": 0,
    "config": 1,
    "trainer": 1,
    "scoring": 1,
    "inflight_scores": 1,
    "streaming": 1,
    "selection": 1,
    "provenance": 1,
    "hub": 2,
    "toy": 3,
    "evaluation": 3,
    "experiments": 4,
    "jobs": 5,
    "cli": 5,
}
MAX_MODULE_LINES = 400


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Every resofilter_hf module `path` imports (top level or inside functions), as dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.split(".")[0] == "resofilter_hf":
                target = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                name = f"{target}.{alias.name}".strip(".")
                if node.module is None and _layer(name) is None:
                    name = target  # an attribute of a package, e.g. `from .. import __version__`: the root facade
                found.append((name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [
                (a.name.partition(".")[2], node.lineno) for a in node.names if a.name.startswith("resofilter_hf.")
            ]
    return found


def _layer(dotted: str) -> int | None:
    if not dotted:  # the package root: the public facade, which lazily reaches every wing
        return max(LAYERS.values())
    return LAYERS.get(dotted.split(".")[0])


def test_every_module_has_a_layer():
    unplaced = [m for m, _ in _modules() if m and _layer(m) is None]
    assert not unplaced, f"modules outside the declared layers: {unplaced}"


@pytest.mark.parametrize("module,path", [(m, p) for m, p in _modules() if m], ids=lambda v: str(v))
def test_imports_run_one_way(module, path):
    mine = _layer(module)
    upward = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports resofilter_hf.{target} (layer {_layer(target)} > {mine})"
        for target, line in _imports(module, path)
        if _layer(target) is not None and _layer(target) > mine
    ]
    assert not upward, "\n".join(upward)


def test_reader_sees_an_upward_import(tmp_path):
    """The checker itself: a planted upward import in an engine module is reported."""
    planted = tmp_path / "scorer.py"
    planted.write_text("from ..trainer import ResonanceTrainer\nfrom . import deltas\nfrom .. import __version__\n")
    assert [t for t, _ in _imports("engine.scorer", planted)] == ["trainer.ResonanceTrainer", "engine.deltas", ""]
    assert _layer("trainer") > _layer("engine.scorer")


def test_old_flat_paths_are_gone():
    for old in ("scorer", "metrics", "capture", "targets", "hub.py", "cards", "story", "sweep", "baselines", "data"):
        assert not (PACKAGE / f"{old}.py").exists() and not (PACKAGE / old).is_dir() or old == "hub.py", old
    assert not (PACKAGE / "hub.py").exists()


def test_modules_stay_short():
    long = {m: n for m, p in _modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"
