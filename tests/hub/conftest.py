"""Shared by the card tests: a scored dataset with labels, its keep-50% selection, and a rendered card."""

import pytest
from datasets import DatasetDict
from publishing_data import scored_dataset

from resofilter_hf.hub.dataset_card import render_dataset_card
from resofilter_hf.selection import select_by_resonance


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
