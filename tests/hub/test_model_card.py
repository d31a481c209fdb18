"""The model card of a checkpoint, and the card plus scores file written beside saved weights."""

import json
import re

import pandas as pd
import pytest
from huggingface_hub import ModelCard
from publishing_data import scored_dataset

from resofilter_hf.hub.model_card import render_model_card, write_checkpoint_card
from resofilter_hf.provenance import load_scored, read_provenance
from resofilter_hf.selection import select_by_resonance


def json_roundtrip(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


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


TRL_README = """---
base_model: tiny-org/tiny-llama
library_name: transformers
model_name: out
tags:
- generated_from_trainer
- trl
- sft
licence: license
---

# Model Card for out

This model is a fine-tuned version of tiny-org/tiny-llama. It has been trained using [TRL](https://github.com/huggingface/trl).
"""


def test_checkpoint_card_and_scores_file(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny-org/tiny-llama"}))
    (ckpt / "README.md").write_text(TRL_README)
    ds = select_by_resonance(scored_dataset(48), keep=0.5)
    readme = write_checkpoint_card(ckpt, scored_dataset=ds, dataset_repo_id="me/demo", dataset_config="keep50")
    assert sorted(p.name for p in ckpt.iterdir()) == ["README.md", "adapter_config.json", "resonance_scores.parquet"]
    scores = load_scored(ckpt / "resonance_scores.parquet")
    assert scores.column_names == ["row", "resonance", "resonance_loss", "resonance_tokens", "resonance_status"]
    assert scores["row"] == list(range(len(ds)))
    pd.testing.assert_frame_equal(
        scores.remove_columns("row").to_pandas(), ds.select_columns(scores.column_names[1:]).to_pandas()
    )
    assert read_provenance(scores) == json_roundtrip(read_provenance(ds))
    card = ModelCard.load(readme)
    assert card.data.library_name == "transformers"  # TRL's value is kept ...
    assert card.data.datasets == ["me/demo"]  # ... ours fills what it lacks
    assert set(card.data.tags) >= {"generated_from_trainer", "trl", "sft", "resofilter-hf"}
    assert "It has been trained using [TRL]" in card.text  # TRL's text stays
    assert 'load_dataset("me/demo", "keep50", split="train")' in card.text
    assert "resonance_scores.parquet" in card.text
    # saving again changes nothing
    before = readme.read_text()
    write_checkpoint_card(ckpt, scored_dataset=ds, dataset_repo_id="me/demo", dataset_config="keep50")
    assert readme.read_text() == before


def test_checkpoint_card_without_existing_readme(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    card = ModelCard.load(write_checkpoint_card(ckpt, model_repo_id="me/model"))
    assert card.data.base_model == "org/base" and card.data.library_name == "peft"
    assert "No scores were saved" in card.text and not (ckpt / "resonance_scores.parquet").exists()
    with pytest.raises(FileNotFoundError, match="save the model there first"):
        write_checkpoint_card(tmp_path / "missing")
