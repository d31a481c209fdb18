"""The quality story end to end at toy size: tables, row accounting, plots."""

import json
import math
from pathlib import Path

import pytest

from resofilter_hf.demo.stats import rank_correlation
from resofilter_hf.demo.story import StorySettings, run_story
from resofilter_hf.provenance import load_scored


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    out = tmp_path_factory.mktemp("story")
    return out, run_story(out, seed=0, quick=True)


def test_story_tables_and_row_accounting(story):
    out, result = story
    settings = StorySettings.quick()
    assert result["n"]["pool"] == settings.n_pool and result["n"]["test"] == settings.n_test
    assert sum(result["flaw_counts"].values()) == settings.n_pool
    assert result["flaw_counts"]["none"] == settings.n_pool - round(settings.n_pool * settings.flaw_rate)
    rows = {(r["column"], r["keep"]): r for r in result["selections"]}
    assert set(rows) == {(c, settings.keep) for c in settings.selections} | {("full", 1.0), ("clean", 1.0)}
    assert rows[("clean", 1.0)]["n_train"] == settings.n_pool
    for (column, keep), row in rows.items():
        assert row["n_train"] == math.ceil(settings.n_pool * keep), column
        assert math.isfinite(row["heldout_loss"]) and 0 <= row["accuracy"] <= 1
    makeup = {m["column"]: m for m in result["makeup"]}
    assert makeup["full"]["flawed_share_kept"] == pytest.approx(1 - result["flaw_counts"]["none"] / settings.n_pool)
    # every scorer x (each flaw type present + "any")
    n_kinds = len(result["flaw_counts"]) - 1 + 1
    scorers = {r["scorer"] for r in result["auroc"]}
    assert len(result["auroc"]) == len(scorers) * n_kinds
    assert {"resonance", "resonance_sgd", "resonance_grad_norm", "baseline_loss", "baseline_ifd"} <= scorers
    assert all(0 <= r["auroc"] <= 1 for r in result["auroc"])
    for name in ("histograms", "roc", "selections"):
        assert Path(result["plots"][name]).read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "story.json").read_text())
    assert saved["table"] == result["table"] and "| selection |" in result["table"]
    # the confound report of every score column, in the printed table too
    scored = load_scored(out / "scored.parquet")
    assert set(result["confounds"]) == scorers
    for column in scorers:
        got, expected = result["confounds"][column]["loss"], rank_correlation(scored[column], scored["resonance_loss"])
        assert got == pytest.approx(expected) if got is not None else math.isnan(expected)
    assert "| scorer | auroc_any_flaw | spearman_length | spearman_loss |" in result["table"]
