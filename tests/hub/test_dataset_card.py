"""The dataset card: YAML configs, provenance and selection counts, label table, citation.

Expected numbers are computed here from the raw columns (Counter, numpy), not read back from the card code."""

import html
import math
import re
from collections import Counter

import numpy as np
from huggingface_hub import DatasetCard
from publishing_data import FLAWS


def table_after(text: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after `heading` (header row included, separator row left out), as a
    renderer reads them: backslash escapes and entities decoded (code spans kept with their backticks)."""
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
                rows.append([html.unescape(re.sub(r"\\(.)", r"\1", c.strip())) for c in cells])
        elif rows:
            break
    return rows


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
    for image in ("resonance_default.png", "resonance_default_confounds.png", "resonance_default_keep.png"):
        assert (folder / "images" / image).is_file() and f"](images/{image})" in card.text  # the report's figures


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
    assert rows[0] == ["flaw", "rows", "unscored", "mean `resonance`", "kept in `keep50`"]
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
