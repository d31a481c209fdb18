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


def assert_report_keeps_what_selection_keeps(ds, column: str, expected_drop: str) -> None:
    """At every keep share, the report's numbers for `column` (rows kept, score at the cut, flagged share kept,
    the rows themselves) equal those of `select_by_resonance` on the same file with its defaults (no `drop=`)."""
    indexed = ds.add_column("i", list(range(len(ds))))
    view = {v.column: v for v in report_context(ds, label_column="flaw").views}[column]
    assert view.drop == expected_drop
    flags = np.asarray([f != "none" for f in ds["flaw"]])
    for percent in range(1, 101):
        selected = select_by_resonance(indexed, keep=percent / 100, column=column)
        assert read_provenance(selected)["selection"]["drop"] == expected_drop, percent
        k = percent - 1
        assert view.curve.rows_kept[k] == len(selected), percent
        assert view.curve.cut[k] == read_provenance(selected)["selection"]["threshold_value"], percent
        kept_flagged = flags[selected["i"]].sum() / flags[view.order].sum()
        assert view.curve.flagged_kept[k] == pytest.approx(kept_flagged, abs=1e-15), percent
        assert sorted(view.kept(percent / 100).tolist()) == selected["i"], percent


@pytest.mark.parametrize("column", ["resonance", ALIGNMENT])
def test_keep_share_numbers_equal_select_by_resonance_at_every_share(column):
    assert_report_keeps_what_selection_keeps(with_alignment(), column, drop_side(column))
    assert drop_side(column) == ("lowest" if column == ALIGNMENT else "highest")


@pytest.mark.parametrize("column, rule_drop", [("resonance", "lowest"), (ALIGNMENT, "highest")])
def test_a_selected_file_keeps_its_own_rule_in_the_report_and_in_selection(column, rule_drop):
    """A file that was itself selected, by `column` with the other end dropped: both the report and a further
    selection read that rule (`columns.resolve`); the other column keeps its declared direction."""
    picked = select_by_resonance(with_alignment(120), keep=0.9, column=column, drop=rule_drop, dedup_on=None)
    assert read_provenance(picked)["selection"]["drop"] == rule_drop != drop_side(column)
    assert_report_keeps_what_selection_keeps(picked, column, rule_drop)
    other = ALIGNMENT if column == "resonance" else "resonance"
    assert_report_keeps_what_selection_keeps(picked, other, drop_side(other))


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


def test_publish_derives_from_a_selected_file_by_its_own_rule(tmp_path):
    """A file selected with the lowest dropped, published with keep shares: each derived config is what
    `select_by_resonance` with its defaults keeps (the file's own rule), and the card says so."""
    from resofilter_hf.hub.publish import publish_dataset

    picked = select_by_resonance(with_alignment(60), keep=0.9, drop="lowest", dedup_on=None)
    out = publish_dataset(picked, local_dir=tmp_path / "repo", configs=[0.5])
    expected = select_by_resonance(picked, keep=0.5)
    assert read_provenance(expected)["selection"]["drop"] == "lowest"
    staged = load_scored(tmp_path / "repo" / "data" / "keep50" / "train-00000-of-00001.parquet")
    assert out.configs["keep50"]["train"] == len(expected) and staged["prompt"] == expected["prompt"]
    assert read_provenance(staged)["selection"]["drop"] == "lowest"


def test_a_rule_without_its_end_reads_the_columns_declared_one(tmp_path):
    """A selection recorded without `drop` (written by hand, or by an older version) over the alignment column:
    the rule sentence says its lowest were dropped, as selection would drop them, in the report and the card."""
    from resofilter_hf.hub.tables import selection_rule
    from resofilter_hf.hub.text import to_markdown
    from resofilter_hf.provenance import with_provenance

    ds = with_provenance(with_alignment(40), selection={"column": ALIGNMENT, "keep": 0.5})
    page = ReportPage(resofilter_hf.report(ds, tmp_path / "r.html").read_text("utf-8"))
    assert "keep 50% of the scored rows (lowest dropped)" in page.text
    assert to_markdown(selection_rule(read_provenance(ds))) == "keep 50% of the scored rows (lowest dropped)"


def test_a_selection_naming_no_usable_column_reads_as_the_files_score(tmp_path):
    """A provenance read, not trusted: a selection whose column is a list names no column; the report falls back
    to the file's score column and its direction instead of failing."""
    from resofilter_hf.provenance import with_provenance

    ds = with_provenance(with_alignment(40), selection={"column": ["resonance"], "drop": "lowest", "keep": 0.5})
    sides = {v.column: v.drop for v in report_context(ds).views}
    assert sides == {"resonance": "highest", ALIGNMENT: "lowest"}


def test_the_scores_file_keeps_the_column_a_selection_names(tmp_path):
    """A file whose provenance names its score column in its selection only: the scores file beside a checkpoint
    keeps that column (and its companions), as the report and the cards read it."""
    from datasets import Dataset

    from resofilter_hf.provenance import write_scores_file

    rows = Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", "y"], "myscore": [1.0, 2.0],
                              "resonance_loss": [0.5, 0.7]})  # fmt: skip
    picked = select_by_resonance(rows, keep=1.0, column="myscore", dedup_on=None)
    assert "scoring" not in read_provenance(picked)
    path = write_scores_file(picked, tmp_path)
    assert load_scored(path).column_names == ["row", "myscore", "resonance_loss"]
