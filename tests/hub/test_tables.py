"""Card tables: label columns found or checked, per-label rows."""

import pytest
from datasets import ClassLabel
from publishing_data import FLAWS, scored_dataset

from resofilter_hf.hub.tables import label_columns_of, label_table


def test_label_columns_detected_or_checked():
    ds = scored_dataset(12)
    assert label_columns_of(ds) == ["flaw"]
    coded = ds.cast_column("flaw", ClassLabel(names=list(FLAWS))).rename_column("flaw", "kind")
    assert label_columns_of(coded) == ["kind"]
    assert label_columns_of(ds.remove_columns("flaw")) == []
    with pytest.raises(ValueError, match="'topic'"):
        label_columns_of(ds, ["topic"])
    # a ClassLabel column is tabulated by name, not code
    table = label_table(coded, "kind", column="resonance")
    assert "| wrong\\_answer | 4 |" in table  # the label as text: its underscore escaped
