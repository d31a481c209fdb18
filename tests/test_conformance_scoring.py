"""Where a drop-in `ResonanceTrainer` scores: target checks only when scoring is asked for, PEFT models scored on
what their adapters cover (else on the base weights), and `score()` equal to the literal loop in every case.
"""

import warnings

import numpy as np
import pytest
import torch
from peft import IA3Config, LoraConfig, PromptEncoderConfig, PromptTuningConfig
from trainer_runs import COMMON, build
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments
from trl import SFTConfig

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.engine.oracle import literal_loop_scores
from resofilter_hf.engine.rows import ROW_ID
from resofilter_hf.engine.targets import unwrap_model
from resofilter_hf.toy import cached_tiny_model, make_math_problems


SCORING_WHEN = ["before_train", "after_train", "inflight"]
FALLBACK = "adapters do not cover"


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model(arch="llama")


@pytest.fixture(scope="module")
def data():
    return make_math_problems(6, seed=5, flaw_rate=0.5)  # uneven lengths


def oracle(trainer, dataset, forward_model=None) -> np.ndarray:
    """The literal loop on the rows `score()` sees, over the trainer's targets (made trainable for the loop: the
    delta of one fresh AdamW step on a tensor depends on that tensor's gradient alone)."""
    model = forward_model or trainer.model
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(len(dataset)))))
    rows = sorted(prepared, key=lambda r: r[ROW_ID])
    names = {id(p): name for name, p in model.named_parameters()}
    weights = [t.weight for t in trainer.resonance_targets]
    flags = [w.requires_grad for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        return np.array(literal_loop_scores(model, rows, [names[id(w)] for w in weights]))
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)


def rel_err(got, ref) -> float:
    return float(np.max(np.abs(np.asarray(got) - ref) / np.abs(ref)))


def scoring_trainer(model_dir, data, out, peft_config=None, **kwargs):
    return build(ResonanceTrainer, ResonanceConfig, model_dir, data, out, dtype=torch.float64,
                 peft_config=peft_config, resonance_resume=False, **kwargs)  # fmt: skip


# ---- target checks happen when scoring is asked for ----------------------------------------------------------

BAD_TARGETS = [
    (dict(resonance_modules=["mlp.nope"]), None, r"\['mlp\.nope'\] matched no module.*Candidates"),
    (dict(resonance_target="lora"), None, r"`resonance_target='lora'` needs a PEFT model"),
    (dict(resonance_target="lora"), "lora-qv", r"resonance_target='lora'` but .*layers\.1\.mlp\.up_proj has no LoRA"),
]


def lora_qv(**kwargs):
    return LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, **kwargs)


@pytest.mark.parametrize("kwargs, peft, message", BAD_TARGETS)
def test_no_scoring_no_target_check_and_score_raises_the_same_error(model_dir, data, tmp_path, kwargs, peft, message):
    peft_config = lora_qv() if peft else None
    trainer = build(ResonanceTrainer, ResonanceConfig, model_dir, data, tmp_path, peft_config=peft_config,
                    max_steps=1, **kwargs)  # fmt: skip
    trainer.train()  # resonance_when="none": trains as SFTTrainer does
    with pytest.raises(ValueError, match=message):
        trainer.score()


@pytest.mark.parametrize("when", SCORING_WHEN)
@pytest.mark.parametrize("kwargs, peft, message", BAD_TARGETS)
def test_a_resonance_when_that_scores_fails_at_construction(model_dir, data, tmp_path, kwargs, peft, message, when):
    peft_config = lora_qv() if peft else None
    with pytest.raises(ValueError, match=message):
        build(ResonanceTrainer, ResonanceConfig, model_dir, data, tmp_path, peft_config=peft_config,
              resonance_when=when, **kwargs)  # fmt: skip


def test_targets_are_found_once(model_dir, data, tmp_path):
    trainer = build(ResonanceTrainer, ResonanceConfig, model_dir, data, tmp_path)
    assert trainer._resonance_targets is None, "nothing resolved before it is needed"
    targets = trainer.resonance_targets
    assert trainer.resonance_targets is targets
    assert [t.name for t in targets] == [f"model.layers.{i}.mlp.up_proj" for i in (1, 2, 3)]


# ---- score() on every argument kind, against the literal loop --------------------------------------------------


@pytest.mark.parametrize("kind", ["SFTConfig", "TrainingArguments", "None"])
def test_default_score_of_each_argument_kind_equals_the_literal_loop(model_dir, data, tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)  # args=None: output_dir is ./<model>-SFT
    args = {"SFTConfig": SFTConfig, "TrainingArguments": TrainingArguments}.get(kind)
    trainer = ResonanceTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64),
        args=args(str(tmp_path / "out"), **COMMON) if args else None,
        train_dataset=data,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    assert isinstance(trainer.args, ResonanceConfig) and trainer.args.resonance_lr == 1e-5
    scored = trainer.score()
    assert rel_err(scored["resonance"], oracle(trainer, data)) <= 1e-9
    assert read_provenance(scored)["scoring"]["target"] == "weights"


# ---- PEFT: adapters when they cover the targets, else the base weights ------------------------------------------

PEFT_METHODS = {
    # adapters that do not reach the up-projection: the base weights, through a forward that has the adapters
    "lora-attention": (lambda: lora_qv(init_lora_weights=False), "weights", "adapters"),
    "ia3-on-up_proj": (
        lambda: IA3Config(target_modules=["up_proj"], feedforward_modules=["up_proj"], init_ia3_weights=False),
        "weights",
        "adapters",
    ),  # fmt: skip
    # prompt learning: the base weights on the base model's forward (its virtual tokens are not scored)
    "prompt-tuning": (lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4), "weights", "base"),
    "p-tuning": (
        lambda: PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16),
        "weights",
        "base",
    ),
    # LoRA on the configured modules: the adapters themselves, no notice
    "lora-up_proj": (
        lambda: LoraConfig(r=4, target_modules=["up_proj"], lora_dropout=0.0, init_lora_weights=False),
        "lora",
        "adapters",
    ),  # fmt: skip
}


@pytest.mark.parametrize("method", list(PEFT_METHODS))
def test_auto_target_of_a_peft_model_equals_the_literal_loop(model_dir, data, tmp_path, method):
    make_config, kind, forward = PEFT_METHODS[method]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = scoring_trainer(model_dir, data, tmp_path, peft_config=make_config())
        first, second = trainer.score(), trainer.score()
    notices = [str(w.message) for w in caught if FALLBACK in str(w.message)]
    assert len(notices) == (1 if kind == "weights" else 0), notices  # once per trainer, not once per score()
    if notices:
        assert "\n" not in notices[0] and "layers.1.mlp.up_proj (and 2 more); scoring the base weights" in notices[0]
    provenance = read_provenance(first)["scoring"]
    assert provenance["target"] == kind
    roles = {t.role for t in trainer.resonance_targets}
    assert roles == ({"weight"} if kind == "weights" else {"lora_A", "lora_B"})
    forward_model = unwrap_model(trainer.model) if forward == "base" else None
    reference = oracle(trainer, data, forward_model)
    assert rel_err(first["resonance"], reference) <= 1e-9
    np.testing.assert_array_equal(first["resonance"], second["resonance"])
    if kind == "weights":  # the base weights of a model whose forward has (or, prompt learning: lacks) the adapters
        plain = scoring_trainer(model_dir, data, tmp_path / "plain")
        plain_scores = np.array(plain.score()["resonance"])
        assert (rel_err(first["resonance"], plain_scores) == 0) == (forward == "base")


def test_weights_given_explicitly_scores_the_base_weights_without_a_notice(model_dir, data, tmp_path):
    trainer = scoring_trainer(model_dir, data, tmp_path, peft_config=lora_qv(), resonance_target="weights")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice: the user asked for it
        targets = trainer.resonance_targets
    assert {t.role for t in targets} == {"weight"}


def test_inflight_with_prompt_learning_is_refused(model_dir, data, tmp_path):
    with pytest.raises(
        ValueError, match=r"`resonance_when='inflight'` with PROMPT_TUNING: training prepends virtual tokens"
    ):
        scoring_trainer(model_dir, data, tmp_path, resonance_when="inflight",
                        peft_config=PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))  # fmt: skip


def test_inflight_on_the_base_weights_of_a_lora_model_equals_score(model_dir, data, tmp_path):
    """lr 0: the step's per-sample deltas of the frozen base weights are score() on the same state."""
    trainer = scoring_trainer(model_dir, data, tmp_path, peft_config=lora_qv(init_lora_weights=False),
                              learning_rate=0.0, per_device_train_batch_size=6, max_steps=1,
                              resonance_when="inflight")  # fmt: skip
    reference = np.array(trainer.score()["resonance"])
    trainer.train()
    np.testing.assert_allclose(trainer.scored_dataset["resonance_epoch0"], reference, rtol=1e-5)
    assert read_provenance(trainer.scored_dataset)["scoring"]["target"] == "weights"


def test_auto_falls_back_on_the_family_default_targets_of_a_gpt2_with_attention_lora(data, tmp_path):
    """GPT-2: LoRA on the fused attention `c_attn`, the default target is the `Conv1D` `mlp.c_fc`."""
    gpt2 = cached_tiny_model(arch="gpt2")
    with pytest.warns(UserWarning, match=r"LORA adapters do not cover .*transformer\.h\.1\.mlp\.c_fc \(and 2 more\)"):
        trainer = scoring_trainer(gpt2, data, tmp_path, peft_config=LoraConfig(r=4, target_modules=["c_attn"],
                                  lora_dropout=0.0, init_lora_weights=False))  # fmt: skip
        scored = trainer.score()
    assert [t.name for t in trainer.resonance_targets] == [
        f"base_model.model.transformer.h.{i}.mlp.c_fc" for i in (1, 2, 3)
    ]
    assert read_provenance(scored)["scoring"]["target"] == "weights"
    assert rel_err(scored["resonance"], oracle(trainer, data)) <= 1e-9
