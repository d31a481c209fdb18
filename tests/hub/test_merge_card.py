"""Merging a new card into an edited one: generated sections and owned metadata replaced, the rest kept."""

from datasets import DatasetDict
from huggingface_hub import DatasetCard

from resofilter_hf.hub.dataset_card import render_dataset_card
from resofilter_hf.hub.merge import SECTION, merge_card


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
    for match in SECTION.finditer(second.text):
        assert merged.text.count(match.group(0).strip()) == 1
    assert merged.text.count("<!-- resofilter-hf:begin") == len(list(SECTION.finditer(second.text)))
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
