"""The report reads each score column's direction from `resofilter_hf.columns`: alignment drops its lowest, the
paper's score its highest; an explicit `drop=` is for the primary column and a file's own selection rule for the
column it names. Its keep-share numbers equal `select_by_resonance`'s on the same column at every share."""

import re

import numpy as np
import pytest
from publishing_data import scored_dataset
from report_page import ReportPage

import resofilter_hf
from resofilter_hf import select_by_resonance
from resofilter_hf.columns import ALIGNMENT, drop_side
from resofilter_hf.hub.report import report_context
from resofilter_hf.provenance import load_scored, read_provenance
from resofilter_hf.selection import drop_order


def with_alignment(n: int = 90, seed: int = 5):
    """The card tests' scored set plus an alignment column where the flawed rows sit LOW (as they do when a
    trusted reference is clean), with ties and the same unscored rows."""
    ds = scored_dataset(n, seed=seed)
    rng = np.random.default_rng(seed)
    flawed = np.asarray([f != "none" for f in ds["flaw"]])
    alignment = np.round(0.3 - 0.2 * flawed + 0.1 * rng.standard_normal(n), 2)  # rounded: equal scores tie
    alignment[np.isnan(np.asarray(ds["resonance"], dtype=float))] = np.nan
    return ds.add_column(ALIGNMENT, alignment.tolist())


@pytest.mark.parametrize("column", ["resonance", ALIGNMENT])
def test_keep_share_numbers_equal_select_by_resonance_at_every_share(column):
    ds = with_alignment()
    indexed = ds.add_column("i", list(range(len(ds))))
    views = {v.column: v for v in report_context(ds, label_column="flaw").views}
    view = views[column]
    assert view.drop == drop_side(column) == ("lowest" if column == ALIGNMENT else "highest")
    flags = np.asarray([f != "none" for f in ds["flaw"]])
    for percent in range(1, 101):
        selected = select_by_resonance(indexed, keep=percent / 100, column=column, drop=drop_side(column))
        k = percent - 1
        assert view.curve.rows_kept[k] == len(selected), percent
        assert view.curve.cut[k] == read_provenance(selected)["selection"]["threshold_value"], percent
        kept_flagged = flags[selected["i"]].sum() / flags[view.order].sum()
        assert view.curve.flagged_kept[k] == pytest.approx(kept_flagged, abs=1e-15), percent
        assert sorted(view.kept(percent / 100).tolist()) == selected["i"], percent


def test_the_page_shows_alignment_dropping_its_lowest(tmp_path):
    ds = with_alignment()
    text = resofilter_hf.report(ds, tmp_path / "r.html", label_column="flaw").read_text("utf-8")
    page = ReportPage(text)
    indexed = ds.add_column("i", list(range(len(ds))))
    flags = np.asarray([f != "none" for f in ds["flaw"]])
    scored_flagged = flags[drop_order(ds, column=ALIGNMENT, drop="lowest")]  # scored, deduplicated rows
    rows = {r[0]: r[1:] for r in page.table("keep-curve")}
    shown = rows[f"{ALIGNMENT} (lowest dropped)"]
    for k, percent in enumerate(range(10, 101, 10)):
        selected = select_by_resonance(indexed, keep=percent / 100, column=ALIGNMENT, drop="lowest")
        assert shown[k] == f"{flags[selected['i']].sum() / scored_flagged.sum():.0%}", percent
    # low alignment is what flags these rows: keeping the top half keeps few flagged ones, not most of them
    assert int(shown[4].rstrip("%")) < 30
    # the alignment panel says which end it drops (and shades it: tests/hub/test_figures.py)
    assert re.search(rf'alt="distribution of {ALIGNMENT}"><figcaption>lowest dropped</figcaption>', text)


def test_explicit_drop_is_for_the_primary_and_a_files_rule_for_its_column():
    ds = with_alignment()
    sides = {v.column: v.drop for v in report_context(ds, drop="lowest").views}
    assert sides["resonance"] == "lowest" and sides[ALIGNMENT] == "lowest"
    sides = {v.column: v.drop for v in report_context(ds, column=ALIGNMENT, drop="highest").views}
    assert sides[ALIGNMENT] == "highest" and sides["resonance"] == "highest"
    picked = select_by_resonance(ds, keep=0.8, column="resonance", drop="lowest")  # the file's own rule
    sides = {v.column: v.drop for v in report_context(picked).views}
    assert sides == {"resonance": "lowest", ALIGNMENT: "lowest"}
    picked = select_by_resonance(ds, keep=0.8, column=ALIGNMENT, drop="highest")
    sides = {v.column: v.drop for v in report_context(picked).views}
    assert sides == {"resonance": "highest", ALIGNMENT: "highest"}


def test_publish_derives_configs_in_each_columns_direction(tmp_path):
    from resofilter_hf.hub.publish import publish_dataset

    ds = with_alignment(48)
    out = publish_dataset(ds, local_dir=tmp_path / "repo", configs={"align50": {"keep": 0.5, "column": ALIGNMENT}})
    expected = select_by_resonance(ds, keep=0.5, column=ALIGNMENT, drop="lowest")
    assert out.configs["align50"]["train"] == len(expected)
    staged = tmp_path / "repo" / "data" / "align50" / "train-00000-of-00001.parquet"
    assert read_provenance(load_scored(staged))["selection"]["drop"] == "lowest"
    assert load_scored(staged)["prompt"] == expected["prompt"]
    assert "keep 50% of the scored rows (lowest dropped)" in (tmp_path / "repo" / "README.md").read_text()
