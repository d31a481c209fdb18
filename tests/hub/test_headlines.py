"""The confound verdict and the loss-on-prompt note as headlines: the report's header and the top of the dataset
card show a strong confound (|rho| >= STRONG_RHO) with the option that addresses it; weak ones stay quiet."""

import pytest
from publishing_data import scored_dataset, scoring_provenance
from report_page import ReportPage

import resofilter_hf
from resofilter_hf.confounds import STRONG_MIN_ROWS, STRONG_RHO
from resofilter_hf.provenance import with_provenance


def scored_with(confounds: dict, **extra):
    scoring = {**scoring_provenance(40, 2), "confounds": confounds, **extra}
    return with_provenance(scored_dataset(40), scoring=scoring)


STRONG = {
    "resonance": {"length": -0.76, "loss": 0.2, "n": 38},
    "resonance_grad_norm": {"length": 0.1, "loss": 0.81, "n": 38},
}
WEAK = {"resonance": {"length": -(STRONG_RHO - 0.01), "loss": 0.3, "n": 38}}


def header_of(path) -> str:
    text = path.read_text(encoding="utf-8")
    return text[text.index("<header") : text.index("</header>")]


def card_top(folder) -> str:
    text = (folder / "README.md").read_text(encoding="utf-8")
    return text[: text.index("## Configs")]


def test_a_strong_confound_is_a_headline_in_the_report_and_the_card(tmp_path):
    ds = scored_with(STRONG)
    header = header_of(resofilter_hf.report(ds, tmp_path / "r.html"))
    page = ReportPage(header)
    assert "read-first" in page.ids
    assert (
        "resonance has Spearman -0.76 with completion length (38 rows scored): keeping the lowest is close to keeping the longest "
        'rows. What to do: select with stratify_by="length" (CLI: --stratify-by length)' in page.text
    )
    assert "resonance_grad_norm (loss, +0.81)" in page.text  # another column's, in one line
    top = card_top(resofilter_hf.publish_dataset(ds, local_dir=tmp_path / "repo").folder)
    assert "**Read this first.**" in top
    assert "> `resonance` has Spearman -0.76 with completion length (38 rows scored): keeping the lowest" in top
    assert '`stratify_by="length"`' in top and "`resonance_grad_norm` (loss, +0.81)" in top


FEW_ROWS = {"resonance": {"length": -0.9, "loss": 0.9, "n": STRONG_MIN_ROWS - 1}}  # too few rows to call


@pytest.mark.parametrize("confounds", [WEAK, FEW_ROWS, {}, "not a report", {"resonance": {"length": "strong"}}])
def test_weak_or_missing_confounds_stay_quiet(confounds, tmp_path):
    ds = scored_with(confounds)
    assert "Read this first" not in header_of(resofilter_hf.report(ds, tmp_path / "r.html"))
    assert "Read this first" not in card_top(resofilter_hf.publish_dataset(ds, local_dir=tmp_path / "repo").folder)


def test_loss_on_the_prompt_is_said_once_with_the_way_to_score_answers_only(tmp_path):
    ds = scored_with(WEAK, loss_on_prompt=True)
    page = ReportPage(header_of(resofilter_hf.report(ds, tmp_path / "r.html")))
    assert page.text.count("falls on the prompt's tokens too") == 1
    assert "prompt/completion rows, or messages with a chat template that has generation markers" in page.text
    top = card_top(resofilter_hf.publish_dataset(ds, local_dir=tmp_path / "repo").folder)
    assert top.count("falls on the prompt's tokens too") == 1 and "`assistant_only_loss=True`" in top
    quiet = scored_with(WEAK, loss_on_prompt=False)
    assert "prompt's tokens" not in header_of(resofilter_hf.report(quiet, tmp_path / "q.html"))


HOSTILE = "res\x1b[2J\x1b[31monance\x1b]0;owned\x07\r\nrm -rf ~\u202e"  # clears the screen, recolours, retitles


def test_the_terminal_headline_prints_a_downloaded_files_names_without_escapes():
    """`resofilter score`'s closing headline names score columns read from a file's provenance: escape sequences,
    control characters and bidi overrides in them never reach the terminal; the sentence is the card's."""
    from resofilter_hf.hub.notices import headline_lines
    from resofilter_hf.provenance import read_provenance

    confounds = {HOSTILE: {"length": -0.76, "loss": 0.2, "n": 38}}
    lines = headline_lines(read_provenance(scored_with(confounds, column=HOSTILE)), HOSTILE)
    assert lines[0] == "Read this first:" and len(lines) == 2
    assert lines[1].startswith("  `resonance rm -rf ~` has Spearman -0.76 with completion length (38 rows")
    assert lines[1].isprintable()


def test_terminal_text_removes_escapes_and_controls_and_keeps_the_rest():
    from resofilter_hf.hub.text import terminal_text

    assert terminal_text(HOSTILE) == "resonance rm -rf ~"
    assert (
        terminal_text("caf\u00e9 \u6f22\u5b57 a<b>&`c`") == "caf\u00e9 \u6f22\u5b57 a<b>&`c`"
    )  # printable text stays
    assert terminal_text("a\x1b[1;31mb\x9b0mc\x1b\\d\x00e\x7ff\tg") == "abcdef g"
