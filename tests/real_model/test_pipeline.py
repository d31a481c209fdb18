"""SmolLM2-135M-Instruct scoring GSM8K chat rows the ways users feed them: a stream read from a Parquet file
scores like the `Dataset` (same scores, statuses and columns), and the report renders the real rows."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset, IterableDataset, load_dataset
from real_rows import gsm8k_chat, scoring_trainer
from report_page import ReportPage
from transformers import AutoModelForCausalLM

import resofilter_hf
from resofilter_hf import read_provenance
from resofilter_hf.provenance import load_scored


pytestmark = pytest.mark.real_model

EMPTY = 2  # the row whose answer is empty: unscored, in its place


@pytest.fixture(scope="module")
def rows():
    chat = gsm8k_chat(6).to_list()
    chat.insert(EMPTY, {"prompt": chat[0]["prompt"], "completion": [{"role": "assistant", "content": ""}]})
    return Dataset.from_list(chat)


def recorded(call) -> tuple[object, list[str]]:
    """`call()` and the messages of the UserWarnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@pytest.fixture(scope="module")
def scored(smollm2, tokenizer, rows, tmp_path_factory):
    """The rows scored as a `Dataset` (float32, batches of 4) with its warnings, then as a stream read from a
    Parquet file (scored into parts) with its warnings, read back whole."""
    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32)
    folder = tmp_path_factory.mktemp("scored")
    trainer = scoring_trainer(model, tokenizer, rows, folder / "out", resonance_batch_size=4, max_length=128)
    expected, expected_warnings = recorded(trainer.score)
    rows.to_parquet(str(folder / "rows.parquet"))
    stream = load_dataset("parquet", data_files=str(folder / "rows.parquet"), split="train", streaming=True)
    result, stream_warnings = recorded(lambda: trainer.score(stream, parts_dir=str(folder / "parts")))
    assert isinstance(result, IterableDataset)
    return expected, expected_warnings, Dataset.from_list(list(result)), stream_warnings, folder / "parts"


def test_a_stream_scores_like_the_dataset(scored, rows):
    expected, _, got, _, parts = scored
    assert got["prompt"] == rows["prompt"] and got["completion"] == rows["completion"]
    statuses = ["ok"] * len(rows)
    statuses[EMPTY] = "empty_completion"
    assert got["resonance_status"] == expected["resonance_status"] == statuses
    for column in ("resonance", "resonance_loss"):
        a, b = np.array(got[column], dtype=np.float64), np.array(expected[column], dtype=np.float64)
        assert np.array_equal(a, b, equal_nan=True), column
        assert np.isnan(a[EMPTY]) and np.isfinite(np.delete(a, EMPTY)).all()
    assert got["resonance_tokens"] == expected["resonance_tokens"]
    back = load_scored(parts)  # the parts folder, read back as users read it
    assert back.column_names == got.column_names and back["resonance_status"] == statuses
    assert np.array_equal(
        np.array(back["resonance"], dtype=np.float64), np.array(got["resonance"], dtype=np.float64), equal_nan=True
    )
    provenance = read_provenance(back)["scoring"]
    assert provenance["model_id"] == read_provenance(expected)["scoring"]["model_id"]
    assert provenance["n_rows"] == len(rows) and provenance["n_scored"] == len(rows) - 1


def test_a_stream_has_the_datasets_columns_and_warnings(scored, rows):
    expected, expected_warnings, got, stream_warnings, _ = scored
    cut = expected["resonance_truncated"]
    assert 0 < sum(cut) < len(rows) - 1, "some rows cut by max_length, some not"
    assert any("longer than max_length=128" in w for w in expected_warnings)
    assert any("no resonance score" in w for w in expected_warnings)
    assert got.column_names == expected.column_names
    assert got["resonance_truncated"] == cut
    assert stream_warnings == expected_warnings


def test_the_report_renders_the_real_rows(scored, tmp_path):
    expected = scored[0]
    out = resofilter_hf.report(expected, tmp_path / "report.html", keep=0.5)
    html = out.read_text(encoding="utf-8")
    page = ReportPage(html)
    sections = ["summary", "distribution", "confounds", "rows-highest", "rows-cut", "rows-lowest", "keep-curve"]
    assert all(anchor in page.ids for anchor in sections), set(sections) - set(page.ids)
    scores = np.array(expected["resonance"], dtype=np.float64)
    ok = np.isfinite(scores)
    order = np.lexsort((np.arange(len(scores)), -np.where(ok, scores, -np.inf)))[: ok.sum()]
    assert [int(r[1]) for r in page.table("rows-highest")] == order.tolist()
    # the confound table's Spearman equals pandas' ranks correlated by numpy, over the scored rows
    tokens = np.array(expected["resonance_tokens"], dtype=np.float64)
    reference = np.corrcoef(pd.Series(scores[ok]).rank(), pd.Series(tokens[ok]).rank())[0, 1]
    table = {r[0]: r for r in page.table("confounds")}
    assert float(table["resonance"][1]) == pytest.approx(reference, abs=5e-4)
    # GSM8K's calculator annotations are text on the page, never markup
    annotated = next(c[0]["content"] for c in expected["completion"] if "<<" in c[0]["content"])
    snippet = annotated[annotated.index("<<") : annotated.index(">>") + 2]
    assert snippet in page.text and snippet not in html
    assert str(read_provenance(expected)["scoring"]["model_id"]) in page.text
