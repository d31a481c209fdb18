"""`resofilter_hf.report`: the page's sections, its numbers against independent references, readable axes, the
keep-share arithmetic against `select_by_resonance`, escaping, and the CLI."""

import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from datasets import Dataset
from publishing_data import scored_dataset
from report_page import ReportPage
from transformers import AutoModelForCausalLM, AutoTokenizer

import resofilter_hf
from resofilter_hf import ResonanceConfig, ResonanceTrainer, select_by_resonance
from resofilter_hf.hub.analysis import axis_for, keep_count, keep_curve, spearman
from resofilter_hf.hub.figures import distribution_figure
from resofilter_hf.provenance import read_provenance, with_provenance, write_parquet
from resofilter_hf.selection import drop_order
from resofilter_hf.toy import cached_tiny_model, make_math_problems


SECTIONS = ["summary", "distribution", "confounds", "rows", "rows-highest", "rows-cut", "rows-lowest", "keep-curve"]
SECTIONS += ["provenance"]


@pytest.fixture(scope="module")
def toy_scored(tmp_path_factory):
    """A real scores file: 36 toy problems (a third flawed) scored by ResonanceTrainer.score() with the anatomy
    columns, written as `resofilter score` writes it."""
    model_dir = cached_tiny_model(arch="llama")
    folder = tmp_path_factory.mktemp("toy-scored")
    args = ResonanceConfig(
        output_dir=str(folder / "out"), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True,
        resonance_anatomy=True, resonance_batch_size=12, resonance_resume=False,
    )  # fmt: skip
    trainer = ResonanceTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=args,
        train_dataset=make_math_problems(36, seed=7, flaw_rate=0.34),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    scored = trainer.score()
    path = write_parquet(scored, folder / "scored.parquet", read_provenance(scored))
    return scored, path


def test_report_of_a_real_scores_file_has_every_section_and_the_right_numbers(toy_scored, tmp_path):
    scored, path = toy_scored
    out = resofilter_hf.report(path, tmp_path / "r.html", keep=0.5)
    page = ReportPage(out.read_text(encoding="utf-8"))
    assert all(anchor in page.ids for anchor in SECTIONS), set(SECTIONS) - set(page.ids)
    scores = np.asarray(scored["resonance"], dtype=np.float64)

    # rows: the highest ten, in order, and which side of the cut each row near it falls on, as the rule says
    order = np.lexsort((np.arange(len(scores)), -scores))  # no duplicate prompts in the toy set
    assert [int(r[1]) for r in page.table("rows-highest")] == order[:10].tolist()
    assert [int(r[1]) for r in page.table("rows-lowest")] == order[::-1][:10].tolist()
    kept = set(select_by_resonance(scored.add_column("i", list(range(len(scored)))), keep=0.5)["i"])
    for row in page.table("rows-cut"):
        assert row[2] == ("kept" if int(row[1]) in kept else "dropped"), row

    # the confound table's Spearman rho equals pandas' ranks correlated by numpy
    reference = {}
    for name, column in (("tokens", "resonance_tokens"), ("loss", "resonance_loss")):
        x = pd.Series(np.asarray(scored[column], dtype=np.float64)).rank()
        reference[name] = np.corrcoef(pd.Series(scores).rank(), x)[0, 1]
    table = {r[0]: r for r in page.table("confounds")}
    assert float(table["resonance"][1]) == pytest.approx(reference["tokens"], abs=5e-4)
    assert float(table["resonance"][2]) == pytest.approx(reference["loss"], abs=5e-4)
    # every score column is described, the anatomy included; the measured columns are not scores
    assert set(table) == {"resonance", "resonance_toward_zero", "resonance_below_eps", "resonance_grad_norm"}

    # the flaw labels were found by name; the summary counts the flagged rows the keep-50% cut keeps
    flaws = np.asarray(scored["flaw"])
    n_flagged, n_kept = int((flaws != "none").sum()), sum(flaws[i] != "none" for i in kept)
    assert f"{n_kept:,} of {n_flagged:,}" in page.text
    # the paper's score reads as ppm from lr, and the provenance table names the model
    assert "deviation from lr = 1e-05, parts per million" in page.text
    assert str(read_provenance(scored)["scoring"]["model_id"]) in page.text
    assert all(src.startswith("data:image/png;base64,") for tag, a in page.tags if tag == "img" for src in [a["src"]])


def test_drop_order_and_keep_curve_agree_with_select_by_resonance():
    ds = scored_dataset(60, seed=4)  # duplicate prompts (rows 40.. repeat 0..), two unscored rows
    indexed = ds.add_column("i", list(range(len(ds))))
    order = drop_order(ds)
    flags = np.asarray([f != "none" for f in ds["flaw"]])
    curve = keep_curve("resonance", order, np.asarray(ds["resonance"], dtype=np.float64), flags)
    for keep in (0.01, 0.1, 0.33, 0.5, 0.7, 0.99, 1.0):
        selected = select_by_resonance(indexed, keep=keep)
        n_keep = keep_count(len(order), keep)
        assert sorted(order[len(order) - n_keep :].tolist()) == selected["i"]
        k = round(keep * 100) - 1
        assert curve.rows_kept[k] == len(selected)
        assert curve.cut[k] == read_provenance(selected)["selection"]["threshold_value"]
        assert curve.flagged_kept[k] == sum(f != "none" for f in selected["flaw"]) / flags[order].sum()


def test_spearman_ties_and_degenerate_inputs():
    x = np.array([1.0, 2.0, 2.0, 3.0, np.nan, 5.0])
    y = np.array([10.0, 20.0, 30.0, 30.0, 1.0, -1.0])
    both = ~np.isnan(x)
    reference = np.corrcoef(pd.Series(x[both]).rank(), pd.Series(y[both]).rank())[0, 1]
    assert spearman(x, y) == (pytest.approx(reference, rel=1e-12), 5)
    assert spearman(np.arange(5.0), np.exp(np.arange(5.0)))[0] == pytest.approx(1.0)
    assert math.isnan(spearman(np.ones(5), np.arange(5.0))[0])
    assert spearman(np.arange(2.0), np.arange(2.0))[1] == 2 and math.isnan(spearman(np.arange(2.0), np.arange(2.0))[0])


def test_the_papers_score_axis_reads_in_ppm_without_an_offset():
    """The histogram of scores 1e-5 * (1 +- 1e-4) used to read "1e-9+1e-5"; its ticks are now plain ppm."""
    scores = 1e-5 * (1 + 1e-4 * np.random.default_rng(0).standard_normal(500))
    axis = axis_for("resonance", scores, lr=1e-5)
    assert axis.unit == "ppm" and axis.text(1e-5 * (1 + 123.4e-6)) == "+123.4 ppm"
    fig = distribution_figure(scores, axis, cuts={"keep 50%": float(np.median(scores))})
    fig.canvas.draw()
    ax = fig.axes[0]
    ticks = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(re.fullmatch(r"-?\d+", t) for t in ticks), ticks
    assert ax.xaxis.get_offset_text().get_text() == "" and ax.yaxis.get_offset_text().get_text() == ""
    # another tiny-spread column reads as ppm from its median; a wider one is scaled to a power of 1000
    small = axis_for("resonance_sgd", scores * 1e-3)
    assert small.label == f"resonance_sgd: deviation from its median {np.median(scores * 1e-3):.7g}, ppm"
    spread = axis_for("resonance_sgd", np.linspace(5e-9, 9e-9, 50))
    assert spread.label == "resonance_sgd (x 1e-9)" and spread.text(7e-9) == "7.000"


HOSTILE = [
    "<script>alert(1)</script>",
    "**bold** and [a link](https://example.com) and `code`",
    '<img src=x onerror="alert(2)"> & "quotes"',
    "# heading\n\n- item\n" + "long line " * 60,
]


def test_rows_with_markup_and_markdown_appear_as_text(tmp_path):
    n = 24
    rng = np.random.default_rng(1)
    ds = Dataset.from_dict(
        {
            "prompt": [HOSTILE[i % 4] + f" #{i}" for i in range(n)],
            "completion": [HOSTILE[(i + 1) % 4] for i in range(n)],
            "<b>label</b>": ["none" if i % 2 else "<i>flaw</i>" for i in range(n)],
            "resonance": (1e-5 * (1 + 1e-4 * rng.standard_normal(n))).tolist(),
        }
    )
    out = resofilter_hf.report(with_provenance(ds, scoring={"model_id": "<script>x</script>"}), tmp_path / "r.html",
                               label_column="<b>label</b>")  # fmt: skip
    text = out.read_text(encoding="utf-8")
    page = ReportPage(text)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "strong", "em", "b", "i", "ul", "li"}, tags
    assert all(a["href"].startswith("#") for tag, a in page.tags if tag == "a")  # only the page's own nav links
    assert [a for tag, a in page.tags if tag == "img" and not a["src"].startswith("data:image/png;base64,")] == []
    assert sum(tag == "h1" for tag, _ in page.tags) == 1  # the title; "# heading" stayed text
    for hostile in HOSTILE[:3]:
        assert hostile in page.text  # shown literally
    assert "<i>flaw</i>" in page.text and "<script>x</script>" in page.text and "<b>label</b>" in page.text
    assert "<details>" in text  # the long row is folded
    assert "Content-Security-Policy" in text and "script-src" not in text  # default-src 'none' forbids scripts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)


def test_inflight_file_without_loss_columns_and_conversations(tmp_path):
    """In-flight files hold only per-epoch columns; conversations show their roles; unscored rows are counted."""
    rows = make_math_problems(20, seed=3, style="conversational")
    rng = np.random.default_rng(2)
    epoch0 = 1e-5 * (1 + 1e-4 * rng.standard_normal(20))
    epoch0[[4, 9]] = np.nan
    ds = rows.add_column("resonance_epoch0", epoch0.tolist()).add_column("resonance_epoch1", (epoch0 * 1.01).tolist())
    out = resofilter_hf.report(with_provenance(ds, scoring={"column": "resonance", "lr": 1e-5}), tmp_path / "r.html")
    page = ReportPage(out.read_text(encoding="utf-8"))
    assert all(anchor in page.ids for anchor in SECTIONS)
    assert "score column resonance_epoch0" in page.text and "18 scored \u00b7 2 unscored" in page.text
    assert [r[0] for r in page.table("confounds")] == ["resonance_epoch0", "resonance_epoch1"]
    assert "\u03c1 with completion characters" in page.text and "user:" in page.text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "resofilter_hf.cli", *args], capture_output=True, text=True)


def test_cli_writes_the_report_and_names_bad_options(toy_scored, tmp_path):
    _, path = toy_scored
    out = tmp_path / "page.html"
    done = run_cli("report", str(path), "--out", str(out), "--label-column", "flaw", "--keep", "0.3")
    assert done.returncode == 0, done.stderr
    assert f"report written to {out}" in done.stdout
    assert "keep 30%" in out.read_text(encoding="utf-8")
    bad = run_cli("report", str(path), "--out", str(out), "--label-column", "nope")
    assert bad.returncode == 2, bad.stderr  # a usage error, in the one-line format
    assert bad.stderr.splitlines()[-1].startswith(
        "resofilter report: error: argument --label-column: 'nope' is not a column; columns present: ["
    )
    with pytest.raises(ValueError, match=re.escape("report: keep=1.5 must be a number with 0 < keep <= 1")):
        resofilter_hf.report(path, out, keep=1.5)
    with pytest.raises(
        ValueError, match=r"report: column='missing' is not a column\. Score the dataset first .*; columns present: "
    ):
        resofilter_hf.report(path, out, column="missing")
    with pytest.raises(ValueError, match="report: drop='middle' is not one of 'highest', 'lowest'"):
        resofilter_hf.report(path, out, drop="middle")


def test_an_out_that_is_not_an_html_file_or_is_the_input_is_refused_before_any_work(toy_scored, tmp_path):
    """A report written over its scored input would lose the scores: refused, the input byte for byte intact."""
    _, path = toy_scored
    before = path.read_bytes()
    cases = [
        (path, f"the output {path} would overwrite the input"),
        (tmp_path / "page.pdf", "the report is one HTML page; give a path ending in .html"),
        (tmp_path, "it is a folder; give a file path such as"),
    ]
    for out, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            resofilter_hf.report(path, out)
        done = run_cli("report", str(path), "--out", str(out))
        assert done.returncode == 2, done.stderr  # a usage error, named in one line
        assert done.stderr.splitlines()[-1].startswith("resofilter report: error: ") and message in done.stderr
    assert path.read_bytes() == before and not (tmp_path / "page.pdf").exists()
    assert resofilter_hf.report(str(path), tmp_path / "page.HTM").is_file()  # either suffix, any case


def test_unscored_text_only_many_labels_and_a_saved_dataset_dict(tmp_path):
    nothing = Dataset.from_dict({"prompt": ["a", "b", "c"], "completion": ["x", "y", "z"], "resonance": [None] * 3})
    page = ReportPage(resofilter_hf.report(nothing, tmp_path / "none.html").read_text(encoding="utf-8"))
    assert all(anchor in page.ids for anchor in SECTIONS) and "0 scored \u00b7 3 unscored" in page.text
    n = 60
    text_only = Dataset.from_dict(
        {"text": [f"row {i} " * (i % 7 + 1) for i in range(n)], "label": [f"l{i}" for i in range(n)],
         "resonance": np.linspace(1.0, 2.0, n).tolist()}
    )  # fmt: skip
    text_only.save_to_disk(str(tmp_path / "saved"))  # a Dataset folder; a DatasetDict one below
    page = ReportPage(resofilter_hf.report(tmp_path / "saved", tmp_path / "t.html").read_text(encoding="utf-8"))
    assert "\u03c1 with completion characters" in page.text and "... 40 rarer labels" in page.text
    assert [r[0] for r in page.table("distribution")][:1] == ["l0"]  # 60 labels: the 20 most common shown
    from datasets import DatasetDict

    DatasetDict({"test": text_only, "train": text_only.select(range(30))}).save_to_disk(str(tmp_path / "dict"))
    page = ReportPage(resofilter_hf.report(tmp_path / "dict", tmp_path / "d.html").read_text(encoding="utf-8"))
    assert "ResoFilter report: dict [train]" in page.text and "30 scored" in page.text


def test_card_figures_are_pngs_in_the_repo_folder(tmp_path):
    from resofilter_hf.hub.report import card_figures

    ds = scored_dataset(90, seed=3)
    paths = card_figures(ds, tmp_path, "resonance_default", column="resonance", cuts={"keep50": 1e-5},
                         label_column="flaw", keep=0.5)  # fmt: skip
    assert paths == {
        "distribution": "images/resonance_default.png",
        "confounds": "images/resonance_default_confounds.png",
        "keep_curve": "images/resonance_default_keep.png",
    }
    for path in paths.values():
        assert (tmp_path / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
