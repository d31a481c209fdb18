"""Card templates: found in the source tree and in the installed (wheel) layout."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resofilter_hf.hub.templates import template_path


ROOT = Path(__file__).resolve().parents[2]


def test_template_found_in_source_tree_and_in_installed_layout(tmp_path):
    # source tree: the top-level model_cards/ folder (no _model_cards copy inside the package here)
    assert template_path("dataset_card.md") == ROOT / "model_cards" / "dataset_card.md"
    assert template_path("model_card.md") == ROOT / "model_cards" / "model_card.md"
    # the wheel puts model_cards/ at resofilter_hf/_model_cards (pyproject force-include) ...
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"]["model_cards"] == "resofilter_hf/_model_cards"
    # ... so lay the package out that way, alone on sys.path, and resolve from a fresh interpreter
    site = tmp_path / "site"
    shutil.copytree(ROOT / "resofilter_hf", site / "resofilter_hf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "model_cards", site / "resofilter_hf" / "_model_cards")
    code = (
        "import resofilter_hf; from resofilter_hf.hub.templates import template_path; "
        "print(resofilter_hf.__file__); print(template_path('dataset_card.md')); print(template_path('model_card.md'))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    package, dataset_card, model_card = out.stdout.split()
    assert Path(package).is_relative_to(site)
    installed = site / "resofilter_hf" / "_model_cards"
    assert Path(dataset_card) == installed / "dataset_card.md"
    assert Path(model_card) == installed / "model_card.md"
    # neither place: the error names both
    with pytest.raises(FileNotFoundError, match="_model_cards.*model_cards"):
        template_path("dataset_card.md", package_dir=tmp_path / "nowhere" / "resofilter_hf")
