"""Data with other column names: GSM8K's question/answer, Alpaca's instruction/input/output and ShareGPT's
conversations are read as TRL's columns (with one notice), scored exactly like the same rows written in TRL's
layout, trained on, and returned with the user's own columns; other names are mapped with `prompt_column` /
`completion_column`; a dataset that fits nothing is refused with its columns and the options to use."""

import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset, load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.toy import cached_tiny_model, make_math_problems


MODEL_DIR = cached_tiny_model(arch="llama")
QUIET = {"report_to": "none", "use_cpu": True, "bf16": False, "disable_tqdm": True}


def make(tmp_path, dataset, args=None, **options) -> ResonanceTrainer:
    return ResonanceTrainer(
        AutoModelForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float64),
        args or ResonanceConfig(str(tmp_path / "out"), **QUIET, resonance_resume=False, **options),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(MODEL_DIR),
    )


def problems(n=5):
    return make_math_problems(n, seed=7).to_list()


def gsm8k_rows():
    return Dataset.from_list([{"question": r["prompt"], "answer": r["completion"]} for r in problems()])


def alpaca_rows():
    rows = [
        {"instruction": r["prompt"], "input": "Show each step." if i % 2 else "", "output": r["completion"]}
        for i, r in enumerate(problems())
    ]
    return Dataset.from_list(rows)


def sharegpt_rows():
    turns = [[{"from": "human", "value": r["prompt"]}, {"from": "gpt", "value": r["completion"]}] for r in problems()]
    return Dataset.from_dict({"conversations": turns, "id": list(range(5))})


def trl_layout(name: str) -> Dataset:
    """The same rows written in TRL's own layout, by hand."""
    rows = problems()
    if name == "gsm8k":
        return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    if name == "alpaca":
        hints = ["", "Show each step."] * 3
        return Dataset.from_list(
            [{"prompt": r["prompt"] + (f"\n\n{h}" if h else ""), "completion": r["completion"]} for r, h in zip(rows, hints)]
        )  # fmt: skip
    messages = [
        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}] for r in rows
    ]
    return Dataset.from_dict({"messages": messages})


LAYOUTS = {"gsm8k": (gsm8k_rows, "GSM8K"), "alpaca": (alpaca_rows, "Alpaca"), "sharegpt": (sharegpt_rows, "ShareGPT")}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_recognised_layout_scores_like_trls_own_and_keeps_the_users_columns(tmp_path, name):
    build, layout = LAYOUTS[name]
    rows = build()
    args = SFTConfig(str(tmp_path / "out"), **QUIET)  # as users call it: their own SFTConfig
    with pytest.warns(UserWarning, match=rf"Reading the {layout} \("):
        trainer = make(tmp_path, rows, args)
    with warnings.catch_warnings(record=True) as again:  # read once, when the trainer was built
        warnings.simplefilter("always")
        scored = trainer.score()
    assert not [w for w in again if "Reading the" in str(w.message)]
    expected = make(tmp_path / "trl", trl_layout(name)).score()
    assert scored.column_names == rows.column_names + [c for c in expected.column_names if c.startswith("resonance")]
    np.testing.assert_array_equal(scored["resonance"], expected["resonance"])
    assert scored["resonance_status"] == ["ok"] * 5
    recorded = read_provenance(scored)["scoring"]["columns_read_as"]
    assert recorded["layout"].startswith(layout) and (
        {"prompt", "completion"} <= set(recorded) or "messages" in recorded
    )


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_recognised_layout_trains_like_trls_own(tmp_path, name):
    build, _ = LAYOUTS[name]
    losses = []
    for folder, rows in (("user", build()), ("trl", trl_layout(name))):
        args = ResonanceConfig(str(tmp_path / folder), **QUIET, max_steps=2, per_device_train_batch_size=2,
                               logging_steps=1, seed=0)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            trainer = make(tmp_path, rows, args)
            trainer.train()
        losses.append([entry["loss"] for entry in trainer.state.log_history if "loss" in entry])
    assert len(losses[0]) == 2 and losses[0] == losses[1]


def test_a_stream_of_question_answer_rows_scores_like_the_dataset(tmp_path):
    rows = gsm8k_rows()
    trainer = make(tmp_path, trl_layout("gsm8k"))
    with pytest.warns(UserWarning, match=r"Reading the GSM8K \(question/answer\) layout"):
        expected = trainer.score(rows)
    path = tmp_path / "rows.parquet"
    rows.to_parquet(str(path))
    stream = load_dataset("parquet", data_files=str(path), split="train", streaming=True)
    with pytest.warns(UserWarning, match=r"Reading the GSM8K \(question/answer\) layout"):
        list(trainer.score(stream, parts_dir=str(tmp_path / "parts")))
    back = load_dataset(str(tmp_path / "parts"), split="train")
    assert back.column_names == expected.column_names
    np.testing.assert_array_equal(back["resonance"], expected["resonance"])


def test_other_names_are_mapped_with_the_column_options(tmp_path):
    rows = Dataset.from_list([{"q": r["prompt"], "a": r["completion"]} for r in problems()])
    trainer = make(tmp_path, rows, prompt_column="q", completion_column="a")
    scored = trainer.score()
    expected = make(tmp_path / "trl", trl_layout("gsm8k")).score()
    np.testing.assert_array_equal(scored["resonance"], expected["resonance"])
    assert scored.column_names[:2] == ["q", "a"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, r"Cannot read a dataset with columns \['q', 'a'\]: .*`prompt_column=` and `completion_column=`"),
        ({"prompt_column": "q"}, r"`prompt_column` needs its pair"),
        (
            {"prompt_column": "q", "completion_column": "answer"},
            r"`completion_column='answer'` is not a column "
            r"of the dataset; its columns are \['q', 'a'\]",
        ),
        ({"messages_column": "q", "prompt_column": "q"}, r"either `messages_column` or `prompt_column`"),
    ],
    ids=["unknown-layout", "half-pair", "missing-column", "both"],
)
def test_columns_that_fit_nothing_are_refused_naming_what_was_found(tmp_path, options, message):
    rows = Dataset.from_list([{"q": r["prompt"], "a": r["completion"]} for r in problems()])
    with pytest.raises(ValueError, match=message):
        make(tmp_path, rows, **options)
    trainer = make(tmp_path, trl_layout("gsm8k"), **options) if not options else None
    if trainer is not None:
        with pytest.raises(ValueError, match=message):
            trainer.score(rows)


def test_the_cli_reads_question_answer_files_and_maps_other_names(tmp_path):
    """`resofilter score` as a subprocess: GSM8K's own columns score as they are; other names need the flags, and
    without them the error lists the columns found and the flags to use."""
    import subprocess
    import sys

    rows = problems()
    Dataset.from_list([{"question": r["prompt"], "answer": r["completion"]} for r in rows]).to_parquet(
        str(tmp_path / "gsm8k.parquet")
    )
    Dataset.from_list([{"q": r["prompt"], "a": r["completion"]} for r in rows]).to_parquet(
        str(tmp_path / "qa.parquet")
    )

    def score(name: str, *flags: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "resofilter_hf.cli", "score", "--model_name_or_path", "toy:llama",
                   "--dataset_name", str(tmp_path / f"{name}.parquet"), "--output_dir", str(tmp_path / name),
                   "--use_cpu", "true", "--report_to", "none", *flags]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    done = score("gsm8k")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Reading the GSM8K (question/answer) layout" in done.stderr
    scored = Dataset.from_parquet(str(tmp_path / "gsm8k" / "scored.parquet"))
    assert scored.column_names[:2] == ["question", "answer"] and scored["resonance_status"] == ["ok"] * 5
    refused = score("qa")
    assert refused.returncode == 1
    assert "Cannot read a dataset with columns ['q', 'a']" in refused.stderr and "--prompt_column" in refused.stderr
    mapped = score("qa", "--prompt_column", "q", "--completion_column", "a")
    assert mapped.returncode == 0, mapped.stderr[-2000:]
    assert Dataset.from_parquet(str(tmp_path / "qa" / "scored.parquet"))["resonance_status"] == ["ok"] * 5


def test_inflight_scores_on_a_recognised_layout_keep_the_users_columns(tmp_path):
    args = ResonanceConfig(str(tmp_path / "out"), **QUIET, max_steps=2, per_device_train_batch_size=5,
                           resonance_when="inflight", resonance_resume=False)  # fmt: skip
    with pytest.warns(UserWarning, match=r"Reading the GSM8K \("):
        trainer = make(tmp_path, gsm8k_rows(), args)
    trainer.train()
    scored = trainer.scored_dataset
    assert scored.column_names[:2] == ["question", "answer"] and "resonance_epoch0" in scored.column_names
    assert np.isfinite(scored["resonance_epoch0"]).all()
    scoring = read_provenance(scored)["scoring"]
    assert scoring["columns_read_as"] == {
        "prompt": "question",
        "completion": "answer",
        "layout": "GSM8K (question/answer)",
    }
    assert scoring["confounds"]["resonance_epoch0"]["n"] == 5


def test_what_follows_scoring_reads_the_rows_as_trl_did(tmp_path):
    """Selection's dedup on the prompt and its length strata, the IFD baseline and a proxy training read a
    question/answer dataset's question and answer, as the scores did."""
    from resofilter_hf.baselines import add_baseline_columns
    from resofilter_hf.selection import select_by_resonance

    rows = Dataset.from_list([*gsm8k_rows().to_list(), gsm8k_rows()[0]])  # the last row repeats the first question
    trainer = make(tmp_path, trl_layout("gsm8k"))
    with pytest.warns(UserWarning, match="Reading the GSM8K"):
        scored = trainer.score(rows)
    kept = select_by_resonance(scored, keep=1.0)
    assert read_provenance(kept)["selection"]["n_duplicates"] == 1 and len(kept) == 5
    expected = select_by_resonance(trainer.score(trl_layout("gsm8k")), keep=0.6, stratify_by="length")
    strata = select_by_resonance(scored.select(range(5)), keep=0.6, stratify_by="length")
    assert strata["question"] == expected["prompt"]
    with_ifd = add_baseline_columns(trainer, scored.select(range(5)), which=["ifd"])
    reference = add_baseline_columns(trainer, trainer.score(trl_layout("gsm8k")), which=["ifd"])
    np.testing.assert_array_equal(with_ifd["baseline_ifd"], reference["baseline_ifd"])


def test_explicit_columns_leave_a_set_already_in_trls_layout_alone(tmp_path):
    rows = Dataset.from_list([{"q": r["prompt"], "a": r["completion"]} for r in problems()])
    trainer = make(tmp_path, rows, prompt_column="q", completion_column="a")
    plain = trl_layout("gsm8k")  # an eval or reference set with TRL's own columns
    scored = trainer.score(reference=plain)
    assert np.isfinite(scored["resonance_alignment"]).all()
    np.testing.assert_array_equal(trainer.score(plain)["resonance"], scored["resonance"])


def test_a_bad_sharegpt_turn_in_a_later_window_of_a_stream_names_its_row(tmp_path, monkeypatch):
    from datasets import IterableDataset

    from resofilter_hf.pipeline import source as pipeline_source

    monkeypatch.setattr(pipeline_source, "WINDOW_ROWS", 4)
    rows = sharegpt_rows().to_list() * 2
    rows[6] = {"conversations": [{"from": "narrator", "value": "x"}], "id": 6}
    trainer = make(tmp_path, trl_layout("gsm8k"))
    with (
        pytest.warns(UserWarning, match="ShareGPT"),
        pytest.raises(ValueError, match=r"^row 6: `conversations` turns"),
    ):
        trainer.score(IterableDataset.from_generator(lambda: iter(rows)), parts_dir=str(tmp_path / "parts"))
