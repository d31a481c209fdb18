"""Hostile files for the report: markup in a score column's name, `$` in names and labels, scores at the float64
limits, provenance of every shape, and only columns the user wrote picked as labels."""

import math
import re

import numpy as np
import pytest
from datasets import Dataset
from publishing_data import scored_dataset, scoring_provenance
from report_page import ReportPage

import resofilter_hf
from resofilter_hf.hub.analysis import axis_for
from resofilter_hf.hub.report_html import CSP
from resofilter_hf.provenance import read_provenance, with_provenance


INJECTED = [
    "<style>body{display:none}</style>",
    '<meta http-equiv="refresh" content="0;url=https://example.com/">',
]


def renamed(column: str, n: int = 30) -> Dataset:
    """A scored set whose score column (named in its provenance, as a downloaded file's would be) is `column`."""
    ds = scored_dataset(n).rename_column("resonance", column)
    return with_provenance(ds, scoring={**scoring_provenance(n, 2), "column": column})


@pytest.mark.parametrize("column", INJECTED)
def test_markup_in_a_score_column_name_stays_text(column, tmp_path):
    text = resofilter_hf.report(renamed(column), tmp_path / "r.html").read_text(encoding="utf-8")
    page = ReportPage(text)
    tags = [tag for tag, _ in page.tags]
    assert tags.count("style") == 1 and text.index("<style>") < text.index("</head>")  # the page's own only
    metas = [a for tag, a in page.tags if tag == "meta"]
    assert [a.get("http-equiv") for a in metas if "http-equiv" in a] == ["Content-Security-Policy"]
    assert f"The 10 most likely to be dropped (highest {column})" in page.text  # the heading shows it as text
    assert "'unsafe-inline'" not in CSP and "style-src 'sha256-" in CSP  # an injected <style> would not apply


def test_dollar_signs_in_names_and_labels_are_drawn_as_text(tmp_path):
    ds = renamed("cost $x^$ in $")
    ds = ds.map(lambda row: {"flaw": f"${row['flaw']}^$"})  # unbalanced mathtext: ParseFatalException if parsed
    out = resofilter_hf.report(ds, tmp_path / "r.html", label_column="flaw")
    page = ReportPage(out.read_text(encoding="utf-8"))
    assert "cost $x^$ in $" in page.text and "$wrong_answer^$" in page.text
    folder = tmp_path / "repo"
    resofilter_hf.publish_dataset(ds, local_dir=folder, configs=[0.5])
    assert (folder / "images" / "cost__x___in___default.png").read_bytes()[:4] == b"\x89PNG"


EXTREMES = [1e308, -1e308, 5e-324, -5e-324, 1.7976931348623157e308, 0.0]


def test_scores_at_the_float64_limits(tmp_path):
    n = 24
    rng = np.random.default_rng(0)
    values = np.where(np.arange(n) < len(EXTREMES), np.resize(EXTREMES, n), rng.normal(size=n))
    values[[7, 8]] = [math.nan, math.inf]
    ds = scored_dataset(n).remove_columns("resonance").add_column("resonance", values.tolist())
    out = resofilter_hf.report(ds, tmp_path / "r.html", label_column="flaw")
    page = ReportPage(out.read_text(encoding="utf-8"))
    stats = {r[0]: r for r in page.table("distribution", 1)}  # the table of every score column
    assert stats["resonance"][2] == "22"  # finite scores: the NaN and inf rows are unscored
    for spread in ([1e308, -1e308, 1.0], [5e-324, 5e-324, 1e-323], [1.7e308, 1.79e308]):
        axis = axis_for("s", np.asarray(spread))
        assert math.isfinite(axis.scale) and np.isfinite(axis.show(np.asarray(spread))).all()
        assert all(axis.text(v) not in ("", "-") for v in spread)
    resofilter_hf.publish_dataset(ds, local_dir=tmp_path / "repo")  # the card's figures and tables too


def test_provenance_fields_show_where_they_apply_and_dicts_read_as_lines(tmp_path):
    scoring = {**scoring_provenance(30, 2), "lora_delta": "adapter", "reference": {"n_rows": 128, "n_used": 127}}
    scoring["target_tensors"] = [
        {"tensor": "layers.1.up", "shape": [4, 8]},
        {"tensor": "layers.2.up", "shape": [4, 8]},
    ]
    full = with_provenance(scored_dataset(30), scoring=scoring)  # target "weights", optimizer "adamw"
    page = ReportPage(resofilter_hf.report(full, tmp_path / "r.html").read_text(encoding="utf-8"))
    settings = {r[0]: r[1] for r in page.table("provenance")}
    assert "LoRA delta" not in settings and "betas" not in settings  # neither changes a full-weight AdamW score
    assert settings["eps"] == "1e-08"
    assert settings["alignment reference set"] == "n_rows: 128\nn_used: 127"
    assert (
        settings["scored tensors"] == "shape: 4, 8 \u00b7 tensor: layers.1.up\nshape: 4, 8 \u00b7 tensor: layers.2.up"
    )
    assert not re.search(r"[{}]|=", "".join(settings.values()))  # no raw dict or k=v dump
    lora = with_provenance(full, scoring={**scoring, "target": "lora", "optimizer": "adamw_state"})
    page = ReportPage(resofilter_hf.report(lora, tmp_path / "l.html").read_text(encoding="utf-8"))
    settings = {r[0]: r[1] for r in page.table("provenance")}
    assert settings["LoRA delta"] == "adapter" and settings["betas"] == "0.9, 0.999"
    card = resofilter_hf.publish_dataset(full, local_dir=tmp_path / "repo").folder / "README.md"
    text = card.read_text(encoding="utf-8")
    assert "| LoRA delta |" not in text and "n\\_rows: 128<br>n\\_used: 127" in text


@pytest.mark.parametrize(
    "read_as, shown",
    [
        ({"prompt": "question", "completion": "answer"}, "question -> prompt, answer -> completion"),
        ({"messages": "conversations"}, "conversations -> messages"),
        ("question -> prompt, answer -> completion", "question -> prompt, answer -> completion"),  # a legacy file
    ],
)
def test_every_scoring_field_has_its_label_and_columns_read_as_reads_as_a_mapping(read_as, shown, tmp_path):
    """The fields the scoring writes besides the model's (where the modules came from, the scored tensors, whether
    the loss covers the prompt, which columns were read as TRL's) have labels in the report and the card, and the
    column mapping reads "the file's column -> TRL's" whether stored as a mapping or as a legacy text."""
    scoring = {**scoring_provenance(30, 2), "modules_source": "up-projection registry: llama",
               "loss_on_prompt": False, "columns_read_as": read_as,
               "target_tensors": [{"tensor": "layers.1.up", "shape": [4, 8]}]}  # fmt: skip
    ds = with_provenance(scored_dataset(30), scoring=scoring)
    page = ReportPage(resofilter_hf.report(ds, tmp_path / "r.html").read_text(encoding="utf-8"))
    settings = {r[0]: r[1] for r in page.table("provenance")}
    assert settings["columns read as"] == shown and settings["modules chosen by"] == "up-projection registry: llama"
    assert settings["loss on the prompt's tokens too"] == "False"
    assert settings["scored tensors"] == "shape: 4, 8 \u00b7 tensor: layers.1.up"
    assert not {"columns_read_as", "modules_source", "loss_on_prompt", "target_tensors"} & set(settings)
    card = resofilter_hf.publish_dataset(ds, local_dir=tmp_path / "repo").folder / "README.md"
    assert f"| columns read as | `{shown}` |" in card.read_text(encoding="utf-8")


def test_library_columns_are_never_picked_as_labels(tmp_path):
    """In-flight files carry `resonance_truncated` (bool): it is no label, so no row is called clean or flagged."""
    n = 20
    ds = Dataset.from_dict({
        "prompt": [f"q{i}" for i in range(n)], "completion": [f"a{i}" for i in range(n)],
        "resonance_epoch0": np.linspace(1.0, 2.0, n).tolist(), "resonance_truncated": [i % 5 == 0 for i in range(n)],
    })  # fmt: skip
    page = ReportPage(resofilter_hf.report(ds, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert "flagged" not in page.text and "clean" not in page.text
    mine = ds.add_column("is_bad", [i % 5 == 0 for i in range(n)])  # a bool column of the user's still is one
    page = ReportPage(resofilter_hf.report(mine, tmp_path / "m.html").read_text(encoding="utf-8"))
    assert "flagged (is_bad) kept" in page.text


def test_hostile_provenance_values_render(tmp_path):
    prov = {
        "scoring": {"model_id": "<b>m</b>", "lr": "1e-5 <i>", "optimizer": ["$x$"], "confounds": [1, 2],
                    "versions": "torch", "reference": {"<k>": {"deep": [1, {"x": None}]}}},
        "selection": {"keep": "half", "drop": "sideways", "column": 7, "dedup_on": ["<p>", "`"]},
        "notes": ["a", {"b": "<script>c</script>"}],
    }  # fmt: skip
    ds = with_provenance(scored_dataset(24).remove_columns([]), **prov)
    page = ReportPage(resofilter_hf.report(ds, tmp_path / "r.html").read_text(encoding="utf-8"))
    assert not {tag for tag, _ in page.tags} & {"i", "script", "k"}
    assert "<b>m</b>" in page.text and "1e-5 <i>" in page.text and "<k>: deep: 1, x: -" in page.text
    # the rule reads the end dropped as `columns.resolve` does (no such end as "sideways": the column's own, the
    # highest); the selection table beside it shows the value as the file has it
    assert "keep half of the scored rows (highest dropped), dedup on <p>, `" in page.text
    assert ["drop", "sideways"] in page.table("selection-rule")
    assert read_provenance(ds)["notes"][1]["b"] in page.text
