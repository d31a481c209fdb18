"""The story's tables: AUROC rows against direct computation, markdown formatting."""

import numpy as np
from datasets import Dataset

from resofilter_hf.demo.stats import auroc
from resofilter_hf.demo.story_tables import auroc_table, format_table


def test_auroc_table_matches_direct_auroc():
    flaws = ["none", "truncated", "none", "off_topic", "truncated", "none"]
    scores = [0.1, 0.9, 0.3, 0.2, 0.5, float("nan")]
    rows = auroc_table(Dataset.from_dict({"flaw": flaws, "s": scores}), ["s"])
    by_kind = {r["flaw"]: r for r in rows}
    assert list(by_kind) == ["off_topic", "truncated", "any"]
    assert by_kind["truncated"]["auroc"] == auroc([0.1, 0.9, 0.3, 0.5, float("nan")], [0, 1, 0, 1, 0]) == 1.0
    assert by_kind["off_topic"]["auroc"] == 0.5  # 0.2 against clean 0.1 and 0.3
    assert by_kind["any"]["n_flawed"] == 3 and by_kind["any"]["n_clean"] == 3
    assert np.isclose(by_kind["any"]["auroc"], 5 / 6)


def test_format_table():
    rows = [{"a": "x", "b": 0.12345, "c": float("nan")}, {"a": "y", "b": 2, "c": 1.0}]
    assert format_table(rows, digits=2) == "| a | b | c |\n|---|---|---|\n| x | 0.12 | nan |\n| y | 2 | 1.00 |"
