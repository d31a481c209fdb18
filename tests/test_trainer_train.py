"""`ResonanceTrainer.train()`: a drop-in for SFTTrainer, and scores captured before, after or during training."""

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from trainer_runs import build, losses
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.provenance import SCORES_FILE, load_scored, read_provenance
from resofilter_hf.toy import cached_tiny_model, make_math_problems


# In-flight gradients come through TRL's fused LM head, which works in float32 whatever the model's dtype.
FUSED_HEAD_RTOL = 1e-5


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model(arch="llama")


# ---- a drop-in for SFTTrainer --------------------------------------------------------------------------------

SETUPS = {
    "prompt-completion": dict(data="text", kwargs={}),
    "conversational+grad-accum": dict(data="conversational", kwargs=dict(gradient_accumulation_steps=2)),
    "assistant-only": dict(data="messages", kwargs=dict(assistant_only_loss=True)),
    "lora": dict(data="text", kwargs={}, peft=True),
    "packing": dict(data="text", kwargs=dict(packing=True, max_length=128)),
    "padding-free": dict(data="text", kwargs=dict(padding_free=True, max_length=None)),
    "eval": dict(data="text", kwargs=dict(eval_strategy="steps", eval_steps=2), eval=True),
}


@pytest.mark.parametrize("name", list(SETUPS))
def test_scoring_off_trains_exactly_like_sft_trainer(model_dir, tmp_path, name):
    setup = SETUPS[name]
    dataset = make_math_problems(12, seed=1, style=setup["data"])
    peft = LoraConfig(r=4, target_modules=["up_proj"], lora_dropout=0.0) if setup.get("peft") else None
    extra = dict(max_steps=4, **setup["kwargs"])
    runs = []
    evaluation = make_math_problems(4, seed=2) if setup.get("eval") else None
    for cls, config_cls in ((SFTTrainer, SFTConfig), (ResonanceTrainer, ResonanceConfig)):
        trainer = build(cls, config_cls, model_dir, dataset, tmp_path / cls.__name__, peft_config=peft,
                        eval_dataset=evaluation, **extra)  # fmt: skip
        trainer.train()
        runs.append((losses(trainer), trainer.model.state_dict(), trainer.state.log_history))
    (sft_losses, sft_weights, sft_log), (ours_losses, our_weights, our_log) = runs
    assert len(sft_losses) == 4 and ours_losses == sft_losses
    assert all(torch.equal(sft_weights[k], our_weights[k]) for k in sft_weights)
    if setup.get("eval"):
        evals = [[h["eval_loss"] for h in log if "eval_loss" in h] for log in (sft_log, our_log)]
        assert evals[0] and evals[0] == evals[1]


def test_inflight_scoring_does_not_change_training(model_dir, tmp_path):
    dataset = make_math_problems(12, seed=1)
    plain = build(SFTTrainer, SFTConfig, model_dir, dataset, tmp_path / "a", max_steps=4)
    plain.train()
    ours = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path / "b", max_steps=4,
                 resonance_when="inflight")  # fmt: skip
    ours.train()
    assert losses(ours) == losses(plain)
    assert all(torch.equal(v, ours.model.state_dict()[k]) for k, v in plain.model.state_dict().items())


def test_callbacks_and_plain_training_arguments_are_accepted(model_dir, tmp_path):
    from transformers import TrainingArguments

    seen = []

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(state.global_step)

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, use_cpu=True, report_to="none")
    trainer = ResonanceTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=make_math_problems(6),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[Count()],
    )
    assert isinstance(trainer.args, ResonanceConfig) and trainer.args.resonance_lr == 1e-5
    trainer.train()
    assert seen == [1, 2]


# ---- in-flight scores --------------------------------------------------------------------------------------


def test_inflight_equals_score_on_the_same_state(model_dir, tmp_path):
    """lr 0: every step sees the initial state, so each epoch's column is score() on it.

    The in-flight gradient is the real training one, through TRL's fused LM head, which computes log-probs in
    float32 even for a float64 model: hence 1e-5 here where the engine and the oracle agree to 1e-9.
    """
    dataset = make_math_problems(10, seed=3)
    trainer = build(
        ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path, dtype=torch.float64, learning_rate=0.0,
        num_train_epochs=2, gradient_accumulation_steps=2, resonance_when="inflight", resonance_resume=False,
    )  # fmt: skip
    reference = np.array(trainer.score()["resonance"])
    trainer.train()
    scored = trainer.scored_dataset
    assert [c for c in scored.column_names if c.startswith("resonance")] == ["resonance_epoch0", "resonance_epoch1"]
    for epoch in (0, 1):
        got = np.array(scored[f"resonance_epoch{epoch}"])
        np.testing.assert_allclose(got, reference, rtol=FUSED_HEAD_RTOL)
    assert read_provenance(scored)["scoring"]["when"] == "inflight"
    assert (tmp_path / SCORES_FILE).is_file()


def test_inflight_first_step_equals_score_before_training(model_dir, tmp_path):
    dataset = make_math_problems(6, seed=4)
    trainer = build(
        ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path, dtype=torch.float64,
        per_device_train_batch_size=6, max_steps=2, resonance_when="inflight", resonance_resume=False,
    )  # fmt: skip
    reference = np.array(trainer.score()["resonance"])
    trainer.train()  # the first step's batch is the whole dataset, seen at the initial state
    np.testing.assert_allclose(trainer.scored_dataset["resonance_epoch0"], reference, rtol=FUSED_HEAD_RTOL)


def test_inflight_scores_ignore_clipping(model_dir, tmp_path):
    """The per-sample gradient is taken before `max_grad_norm` clips the batch gradient."""
    dataset = make_math_problems(6, seed=5)
    scores = []
    for clip in (1e-6, 1e6):
        trainer = build(
            ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path / str(clip), dtype=torch.float64,
            per_device_train_batch_size=6, max_steps=1, max_grad_norm=clip, resonance_when="inflight",
        )  # fmt: skip
        trainer.train()
        scores.append(np.array(trainer.scored_dataset["resonance_epoch0"]))
    np.testing.assert_array_equal(scores[0], scores[1])


def test_inflight_padding_free_separates_samples(model_dir, tmp_path):
    dataset = make_math_problems(6, seed=6)
    trainer = build(
        ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path, dtype=torch.float64, learning_rate=0.0,
        padding_free=True, max_length=None, max_steps=2, resonance_when="inflight", resonance_resume=False,
    )  # fmt: skip
    reference = np.array(trainer.score()["resonance"])  # scoring pads: one row per sample
    trainer.train()
    np.testing.assert_allclose(trainer.scored_dataset["resonance_epoch0"], reference, rtol=FUSED_HEAD_RTOL)


def test_inflight_live_state_at_the_first_step_is_a_fresh_adamw_step(model_dir, tmp_path):
    dataset = make_math_problems(6, seed=7)
    trainer = build(
        ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path, dtype=torch.float64,
        per_device_train_batch_size=6, max_steps=1, learning_rate=3e-4, weight_decay=0.1,
        resonance_when="inflight", resonance_inflight_state="live", resonance_resume=False,
    )  # fmt: skip
    trainer.train()
    live = np.array(trainer.scored_dataset["resonance_epoch0"])
    fresh = build(
        ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path / "fresh", dtype=torch.float64,
        resonance_lr=3e-4, resonance_weight_decay=0.1, resonance_resume=False,
    ).score()  # fmt: skip
    np.testing.assert_allclose(live, fresh["resonance"], rtol=FUSED_HEAD_RTOL)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_resume_from_checkpoint_keeps_inflight_scores_each_row_once_per_epoch(model_dir, tmp_path):
    dataset = make_math_problems(9, seed=8)
    kwargs = dict(
        dtype=torch.float64, num_train_epochs=2, learning_rate=1e-3, lr_scheduler_type="constant",
        save_strategy="steps", save_steps=4, resonance_when="inflight", resonance_resume=False,
    )  # fmt: skip
    full = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path / "full", **kwargs)
    full.train()
    first = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path / "cut", **kwargs)
    first.add_callback(StopAt(4))  # epoch 0 has 3 steps: stop inside epoch 1
    first.train()
    state = json.loads((tmp_path / "cut" / "checkpoint-4" / "resonance_state.json").read_text())
    assert set(state["inflight"]) == {"0", "1"}
    resumed = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path / "cut", **kwargs)
    resumed.train(resume_from_checkpoint=True)
    for epoch in (0, 1):
        column = f"resonance_epoch{epoch}"
        got, expected = np.array(resumed.scored_dataset[column]), np.array(full.scored_dataset[column])
        assert np.isfinite(got).all(), "every row scored in every epoch"
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert losses(resumed)[-1] == pytest.approx(losses(full)[-1], rel=1e-9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(packing=True, max_length=64), r"cannot follow rows through packing.*packing=False.*padding_free=True"),
        (dict(loss_type="dft"), r"needs `loss_type='nll'`"),
        (dict(gradient_checkpointing_kwargs={"use_reentrant": True}), r"non-reentrant gradient checkpointing"),
    ],
)
def test_inflight_refuses_inexact_setups_at_construction(model_dir, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(ResonanceTrainer, ResonanceConfig, model_dir, make_math_problems(4), tmp_path,
              resonance_when="inflight", **kwargs)  # fmt: skip


def test_inflight_refuses_lora_dropout(model_dir, tmp_path):
    peft = LoraConfig(r=4, target_modules=["up_proj"], lora_dropout=0.1)
    with pytest.raises(ValueError, match=r"LoRA dropout 0.1.*lora_dropout=0"):
        build(ResonanceTrainer, ResonanceConfig, model_dir, make_math_problems(4), tmp_path, peft_config=peft,
              resonance_when="inflight")  # fmt: skip


def test_lora_scores_before_training_warn_that_lora_a_has_no_gradient(model_dir, tmp_path):
    peft = LoraConfig(r=4, target_modules=["up_proj"], lora_dropout=0.0)  # PEFT default init: B = 0
    with pytest.warns(UserWarning, match="lora_A gets exactly zero gradient"):
        build(ResonanceTrainer, ResonanceConfig, model_dir, make_math_problems(4), tmp_path, peft_config=peft,
              resonance_when="before_train")  # fmt: skip


# ---- before / after training, checkpoints and cards ----------------------------------------------------------


def test_before_and_after_train_score_the_states_they_name(model_dir, tmp_path):
    dataset = make_math_problems(6, seed=9)
    before = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path / "b", max_steps=3,
                   learning_rate=1e-2, resonance_when="before_train")  # fmt: skip
    initial = np.array(before.score()["resonance"])
    before.train()
    np.testing.assert_allclose(before.scored_dataset["resonance"], initial, rtol=1e-6)
    after = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path / "a", max_steps=3,
                  learning_rate=1e-2, resonance_when="after_train")  # fmt: skip
    after.train()
    np.testing.assert_allclose(after.scored_dataset["resonance"], np.array(after.score()["resonance"]), rtol=1e-6)
    assert not np.allclose(after.scored_dataset["resonance"], initial, rtol=1e-7, atol=0), "training moved the model"


def test_save_model_writes_scores_and_card_beside_the_weights(model_dir, tmp_path):
    dataset = make_math_problems(6, seed=10)
    trainer = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path, max_steps=2,
                    save_strategy="steps", save_steps=2, resonance_when="before_train")  # fmt: skip
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    for folder in (tmp_path / "checkpoint-2", tmp_path / "final"):
        scores = load_scored(folder / SCORES_FILE)
        assert list(scores["row"]) == list(range(6))
        np.testing.assert_array_equal(scores["resonance"], trainer.scored_dataset["resonance"])
        assert read_provenance(scores)["scoring"]["lr"] == 1e-5
    assert "2412.14809" in (tmp_path / "README.md").read_text()  # TRL's own card cites the method
    # a resumed run restores the before-train scores instead of scoring again
    resumed = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path, max_steps=2,
                    resonance_when="before_train")  # fmt: skip
    resumed.score = None  # would fail if called
    resumed._restore_resonance(tmp_path / "checkpoint-2")
    np.testing.assert_array_equal(resumed.scored_dataset["resonance"], trainer.scored_dataset["resonance"])


def test_unscored_rows_stay_nan_in_flight(model_dir, tmp_path):
    rows = make_math_problems(5, seed=11).to_list()
    rows[2]["prompt"] = "word " * 300  # fully truncated: TRL drops it, it is never trained
    trainer = build(ResonanceTrainer, ResonanceConfig, model_dir, Dataset.from_list(rows), tmp_path,
                    max_length=128, max_steps=2, resonance_when="inflight")  # fmt: skip
    trainer.train()
    column = np.array(trainer.scored_dataset["resonance_epoch0"])
    assert np.isnan(column[2]) and np.isfinite(np.delete(column, 2)).all()


def test_scores_file_keeps_every_column_with_a_custom_score_column(model_dir, tmp_path):
    """One writer: the file after train(), save_model() and a checkpoint has the same columns, companions included."""
    dataset = make_math_problems(6, seed=12)
    trainer = build(ResonanceTrainer, ResonanceConfig, model_dir, dataset, tmp_path, max_steps=2,
                    save_strategy="steps", save_steps=2, resonance_when="before_train",
                    resonance_column="reso")  # fmt: skip
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    expected = ["row", "reso", "resonance_loss", "resonance_tokens", "resonance_status", "resonance_truncated"]
    for folder in (tmp_path, tmp_path / "checkpoint-2", tmp_path / "final"):
        scores = load_scored(folder / SCORES_FILE)
        assert scores.column_names == expected, folder
        np.testing.assert_array_equal(scores["reso"], trainer.scored_dataset["reso"])
        assert scores["resonance_status"] == trainer.scored_dataset["resonance_status"]
        assert read_provenance(scores)["scoring"]["column"] == "reso"
