"""Cards: template lookup, histogram, the numbers a dataset card reports, and merging into an edited card.

Expected numbers are computed here from the raw columns (Counter, numpy), not read back from the card code."""

import math
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, DatasetDict
from huggingface_hub import DatasetCard, ModelCard
from publishing_data import FLAWS, scored_dataset

from resofilter_hf.hub import cards
from resofilter_hf.hub.cards import (
    histogram_figure,
    merge_card,
    render_dataset_card,
    render_model_card,
    score_histogram,
    template_path,
)
from resofilter_hf.selection import select_by_resonance


ROOT = Path(__file__).resolve().parents[2]


def table_after(text: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after `heading` (header row included, separator row left out)."""
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows


@pytest.fixture(scope="module")
def data():
    ds = scored_dataset()
    return ds, select_by_resonance(ds, 0.5)


@pytest.fixture(scope="module")
def card_and_folder(data, tmp_path_factory):
    ds, keep50 = data
    folder = tmp_path_factory.mktemp("card")
    configs = {"default": DatasetDict(train=ds), "keep50": DatasetDict(train=keep50)}
    files = {name: {"train": [f"data/{name}/train-00000-of-00001.parquet"]} for name in configs}
    return render_dataset_card(configs, files, repo_id="me/demo", folder=folder), folder


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
        "import resofilter_hf; from resofilter_hf.hub.cards import template_path; "
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


def test_histogram_marks_the_cuts(tmp_path):
    scores = np.r_[np.linspace(1.0, 2.0, 200), np.nan, np.inf]
    fig = histogram_figure(scores, thresholds={"keep50": 1.5, "keep25": 1.25})
    ax = fig.axes[0]
    assert sum(p.get_height() for p in ax.patches if p.get_label() != "dropped by keep50 (highest scores)") == 200
    lines = {line.get_label(): line.get_xdata()[0] for line in ax.lines}
    assert lines == {"keep50 cut: 1.5": 1.5, "keep25 cut: 1.25": 1.25}
    (span,) = [p for p in ax.patches if p.get_label().startswith("dropped by keep50")]
    left, right = sorted([span.get_x(), span.get_x() + span.get_width()])
    assert left == pytest.approx(1.5) and right >= 2.0  # highest scores dropped: from the cut to the right edge
    low = histogram_figure(scores, thresholds={"keep50": 1.5}, drop="lowest").axes[0]
    (span,) = [p for p in low.patches if p.get_label().startswith("dropped by")]
    left, right = sorted([span.get_x(), span.get_x() + span.get_width()])
    assert right == pytest.approx(1.5) and left <= 1.0
    path = score_histogram(scores, tmp_path / "h" / "plot.png", thresholds={"keep50": 1.5})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dataset_card_yaml_matches_the_configs(card_and_folder, data):
    card, folder = card_and_folder
    reparsed = DatasetCard(str(card))  # the YAML parses
    configs = reparsed.data.to_dict()["configs"]
    assert [c["config_name"] for c in configs] == ["default", "keep50"]
    assert [c.get("default", False) for c in configs] == [True, False]
    assert configs[1]["data_files"] == [{"split": "train", "path": "data/keep50/train-00000-of-00001.parquet"}]
    assert reparsed.data.to_dict()["size_categories"] == ["n<1K"]
    rows = table_after(card.text, "## Configs")
    assert rows[1][:3] == ["`default`", "train (48)", "48"]
    assert rows[2][:3] == ["`keep50`", f"train ({len(data[1])})", str(len(data[1]))]
    assert 'keep50 = load_dataset("me/demo", "keep50")' in card.text
    assert (folder / "images" / "resonance_default.png").is_file()
    assert "](images/resonance_default.png)" in card.text


def test_dataset_card_provenance_and_selection_counts(card_and_folder, data):
    card, _ = card_and_folder
    scoring = dict(row for row in table_after(card.text, "## How the scores were made")[1:])
    assert scoring["base model"] == "`tiny-org/tiny-llama`"
    assert scoring["model revision"] == "`0123456789abcdef0123456789abcdef01234567`"
    assert scoring["modules"] == "`mlp.up_proj`" and scoring["layers"] == "1, 2, 3"
    assert scoring["optimizer transform"] == "`adamw`"
    assert float(scoring["learning rate"]) == 1e-5 and float(scoring["eps"]) == 1e-8
    assert float(scoring["weight decay"]) == 0.01
    assert scoring["dtype"] == "`float32`" and scoring["max length (tokens)"] == "768"
    assert scoring["chat template sha256"] == "`" + "ab" * 32 + "`"
    versions = dict(row for row in table_after(card.text, "Library versions:")[1:])
    assert versions == {"datasets": "5.2.0", "torch": "2.13.0", "transformers": "5.24.0"}
    # 48 rows; prompts 40..47 repeat 0..7 (8 duplicates); rows 3 and 11 unscored; 38 scored, keep ceil(38/2)
    assert "Of 48 input rows, 8 were duplicates, 2 unscored (`nan=drop`), 19 kept and 19 dropped." in card.text
    assert len(data[1]) == 19
    assert "keep 50% of the scored rows (highest dropped), dedup on prompt" in card.text


def test_dataset_card_label_table(card_and_folder, data):
    card, _ = card_and_folder
    ds, keep50 = data
    rows = table_after(card.text, "### `flaw` in `default`")
    assert rows[0] == ["flaw", "rows", "unscored", "mean resonance", "kept in `keep50`"]
    flaws, scores = np.array(ds["flaw"]), np.array(ds["resonance"], dtype=float)
    counts, kept = Counter(ds["flaw"]), Counter(keep50["flaw"])
    assert sorted(r[0] for r in rows[1:]) == sorted(FLAWS)
    for label, n, unscored, mean, share in rows[1:]:
        mine = scores[flaws == label]
        assert int(n) == counts[label]
        assert int(unscored) == int(np.isnan(mine).sum())
        assert math.isclose(float(mean), np.nanmean(mine), rel_tol=1e-6)
        assert share == f"{kept[label] / counts[label]:.1%}"
    # flawed rows score higher in this data, so the rule keeps more of the clean ones
    shares = {r[0]: float(r[4].rstrip("%")) for r in rows[1:]}
    assert shares["none"] > shares["off_topic"]


def test_dataset_card_citation(card_and_folder):
    text = card_and_folder[0].text
    assert "2412.14809" in text
    assert "Tu, Zeao and Meng, Xiangdi" in text
    assert "Findings of the Association for Computational Linguistics: NAACL 2025" in text


def test_label_columns_detected_or_checked():
    ds = scored_dataset(12)
    assert cards.label_columns_of(ds) == ["flaw"]
    coded = ds.cast_column("flaw", ClassLabel(names=list(FLAWS))).rename_column("flaw", "kind")
    assert cards.label_columns_of(coded) == ["kind"]
    assert cards.label_columns_of(ds.remove_columns("flaw")) == []
    with pytest.raises(ValueError, match="'topic'"):
        cards.label_columns_of(ds, ["topic"])
    # a ClassLabel column is tabulated by name, not code
    table = cards.label_table(coded, "kind", column="resonance")
    assert "| wrong_answer | 4 |" in table


def test_merge_keeps_what_a_person_wrote(data, tmp_path):
    ds, keep50 = data
    first = render_dataset_card(
        {"default": DatasetDict(train=ds)}, {"default": {"train": ["data/default/train-00000-of-00001.parquet"]}}
    )
    # a person edits the card on the Hub: title, a paragraph, a licence, a config of their own
    edited = str(first).replace("# Resonance-scored dataset", "# My math set")
    edited = edited.replace(
        "<!-- resofilter-hf:begin configs -->", "Collected by hand, 2026.\n\n<!-- resofilter-hf:begin configs -->"
    )
    card = DatasetCard(edited)
    card.data.license = "mit"
    card.data.configs.append({"config_name": "raw", "data_files": "raw/*.jsonl"})
    edited = str(card)
    configs = {"default": DatasetDict(train=ds), "keep50": DatasetDict(train=keep50)}
    files = {name: {"train": [f"data/{name}/train-00000-of-00001.parquet"]} for name in configs}
    second = render_dataset_card(configs, files, repo_id="me/demo")
    text = merge_card(edited, str(second))
    assert text.startswith("---\n") and text.count("\n---\n") == 1  # one YAML block, at the top
    merged = DatasetCard(text)
    assert "# My math set" in merged.text and "Collected by hand, 2026." in merged.text
    assert "# demo" not in merged.text  # the new title does not replace theirs
    assert merged.data.license == "mit"
    assert [c["config_name"] for c in merged.data.configs] == ["default", "keep50", "raw"]
    # every generated section is the new one, each exactly once
    for match in cards.SECTION.finditer(second.text):
        assert merged.text.count(match.group(0).strip()) == 1
    assert merged.text.count("<!-- resofilter-hf:begin") == len(list(cards.SECTION.finditer(second.text)))
    assert "### `keep50`" in merged.text  # the selection section now describes keep50


def test_merge_into_a_push_to_hub_readme(data):
    """push_to_hub writes YAML only (dataset_info + configs); ours replaces its config and stale split sizes."""
    ds, _ = data
    old = """---
dataset_info:
  features:
  - name: prompt
    dtype: string
  splits:
  - name: train
    num_bytes: 100
    num_examples: 3
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
---
"""
    new = render_dataset_card({"default": DatasetDict(train=ds)}, {"default": {"train": ["data/default/t.parquet"]}})
    merged = DatasetCard(merge_card(old, str(new)))
    assert "dataset_info" not in merged.data.to_dict()
    assert merged.data.configs[0]["data_files"] == [{"split": "train", "path": "data/default/t.parquet"}]
    assert merged.text.count("<!-- resofilter-hf:begin") == new.text.count("<!-- resofilter-hf:begin")


def test_model_card(data):
    _, keep50 = data
    card = render_model_card(
        scored_dataset=keep50, dataset_repo_id="me/demo", dataset_config="keep50", scores_file="s.parquet"
    )
    meta = card.data.to_dict()
    assert meta["base_model"] == "tiny-org/tiny-llama"  # from the scoring provenance
    assert meta["datasets"] == ["me/demo"]
    assert "resofilter-hf" in meta["tags"]
    assert 'load_dataset("me/demo", "keep50", split="train")' in card.text
    assert "19 kept" in card.text
    assert "`resonance`, `resonance_loss`, `resonance_tokens`, `resonance_status`" in card.text
    assert re.search(r"\| scored \| 19 \|", card.text)  # keep50 holds 19 scored rows, no unscored
    reparsed = ModelCard(str(card))
    assert reparsed.data.base_model == "tiny-org/tiny-llama"
    assert "[`tiny-org/tiny-llama`](https://huggingface.co/tiny-org/tiny-llama)" in card.text
    # a model scored from a local folder: named in the text, kept out of the YAML (the Hub wants a repo id there)
    local = render_model_card(scored_dataset=keep50, base_model="/tmp/tiny-model")
    assert "base_model" not in local.data.to_dict()
    assert "A fine-tune of `/tmp/tiny-model` on data" in local.text
