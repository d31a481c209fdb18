"""The confound verdict in the product: `score()` warns, once per strong confound, when a score mostly ranks rows
by completion length (or loss), naming the column, rho and the option that addresses it; it stays quiet on the
demo's toy world, where the paper's score is only tilted by length; and it says so when the loss covers the prompt's
tokens too. (On real model-written GSM8K solutions scored by SmolLM2, where it fires, see tests/real_model.)"""

import warnings

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.confounds import STRONG_MIN_ROWS, STRONG_RHO, strong_confounds
from resofilter_hf.demo.settings import StorySettings
from resofilter_hf.demo.story_steps import build_base, make_world, warm_up
from resofilter_hf.toy import cached_tiny_model, make_math_problems


QUIET = {"report_to": "none", "use_cpu": True, "bf16": False, "disable_tqdm": True, "resonance_resume": False}


def caught(call) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in seen]


def test_the_verdict_reads_the_direction_and_needs_enough_rows():
    report = {
        "resonance": {"length": -0.8, "loss": 0.1, "n": 100},
        "resonance_alignment": {"length": 0.7, "loss": -0.65, "n": 100},
        "resonance_grad_norm": {"length": 0.59, "loss": None, "n": 100},
        "baseline_length": {"length": 1.0, "loss": 0.0, "n": STRONG_MIN_ROWS - 1},
    }
    found = {(e["column"], e["against"]): e["text"] for e in strong_confounds(report)}
    assert found == {
        (
            "resonance",
            "length",
        ): "`resonance` has Spearman -0.80 with completion length (100 rows scored): keeping the lowest is close "
        "to keeping the longest rows",
        (
            "resonance_alignment",
            "length",
        ): "`resonance_alignment` has Spearman +0.70 with completion length (100 rows scored): keeping "
        "the highest is close to keeping the longest rows",
        (
            "resonance_alignment",
            "loss",
        ): "`resonance_alignment` has Spearman -0.65 with loss (100 rows scored): keeping the highest is "
        "close to keeping the lowest-loss rows",
    }
    assert STRONG_RHO == 0.6


def test_messages_rows_without_an_assistant_mask_are_said_to_score_the_prompt_too(tmp_path):
    model_dir = cached_tiny_model(arch="llama")
    make = lambda rows, **kw: ResonanceTrainer(  # noqa: E731
        AutoModelForCausalLM.from_pretrained(model_dir), ResonanceConfig(str(tmp_path), **QUIET, **kw),
        train_dataset=rows, processing_class=AutoTokenizer.from_pretrained(model_dir),
    )  # fmt: skip
    messages = make_math_problems(4, seed=2, style="messages")
    scored, said = caught(make(messages).score)
    assert sum("falls on the prompt's tokens too" in m for m in said) == 1
    assert read_provenance(scored)["scoring"]["loss_on_prompt"] is True
    for quiet in (make(messages, assistant_only_loss=True), make(make_math_problems(4, seed=2))):
        scored, said = caught(quiet.score)
        assert not [m for m in said if "prompt's tokens" in m]
        assert read_provenance(scored)["scoring"]["loss_on_prompt"] is False


def test_on_the_demo_world_length_stays_quiet_and_loss_is_said_once(tmp_path):
    """The demo's basic world, its warmed model and its 800-row flawed pool: the paper's score is only tilted by
    length (|rho| well under the threshold), so nothing is said about length; it follows the loss closely (the
    flawed rows are the high-loss ones), which is said once, with what to compare it with."""
    settings = StorySettings.basic()
    warm, pool, _ = make_world(settings, seed=0)
    warmed = warm_up(build_base(settings, 0, tmp_path / "base"), warm, settings.warmup, 0, tmp_path / "warm")
    trainer = ResonanceTrainer(
        AutoModelForCausalLM.from_pretrained(warmed, dtype=torch.float32),
        ResonanceConfig(str(tmp_path / "score"), **QUIET, resonance_batch_size=16, max_length=96),
        train_dataset=pool.select_columns(["prompt", "completion"]),
        processing_class=AutoTokenizer.from_pretrained(warmed),
    )
    scored, said = caught(trainer.score)
    rho = read_provenance(scored)["scoring"]["confounds"]["resonance"]
    assert abs(rho["length"]) < STRONG_RHO and rho["n"] == len(pool) and np.isfinite(rho["length"])
    assert not [m for m in said if "with completion length" in m], said
    assert rho["loss"] >= STRONG_RHO
    assert [m for m in said if "Spearman" in m] == [
        f"`resonance` has Spearman {rho['loss']:+.2f} with loss ({rho['n']} rows scored): keeping the lowest is close to keeping the "
        'lowest-loss rows; select by the loss itself as well (`column="resonance_loss"`, CLI: `--column '
        "resonance_loss`) and compare before trusting the score over it."
    ]


def test_the_cli_says_the_verdict_once_as_its_closing_headline(tmp_path):
    """`resofilter score` as a subprocess on `messages` rows: the loss-on-prompt note is printed once, as the last
    words on stdout, and not also as a warning on stderr."""
    import subprocess
    import sys

    make_math_problems(6, seed=2, style="messages").to_parquet(str(tmp_path / "rows.parquet"))
    command = [sys.executable, "-m", "resofilter_hf.cli", "score", "--model_name_or_path", "toy:llama",
               "--dataset_name", str(tmp_path / "rows.parquet"), "--output_dir", str(tmp_path / "out"),
               "--use_cpu", "true", "--report_to", "none"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[-2] == "Read this first:" and "falls on the prompt's tokens too" in lines[-1]
    assert "`assistant_only_loss=True`" in lines[-1] and "prompt's tokens" not in done.stderr
