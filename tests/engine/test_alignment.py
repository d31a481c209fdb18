"""Alignment scores against a batch-size-1 autograd loop: per-sample gradients from the model's own logits, each
one stepped by a real torch optimizer (or left raw), flattened over all targets, cosine with the mean step of the
reference rows. float64, to 1e-9 relative, for full weights and LoRA adapters, for every transform."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.engine.alignment import attach_reference
from resofilter_hf.engine.rows import ROW_ID
from resofilter_hf.engine.scorer import scoring_mode
from resofilter_hf.provenance import load_scored
from resofilter_hf.toy import cached_tiny_model, make_math_problems


LR, WD, EPS = 1e-5, 0.01, 1e-8
SETTLED = 10**7  # AdamW step count at which both bias corrections are exactly 1 in float64
TRANSFORMS = {  # name -> ResonanceConfig fields
    "grad": dict(resonance_optimizer="sgd", resonance_weight_decay=0.0),
    "sgd": dict(resonance_optimizer="sgd", resonance_lr=1e-2),
    "adamw": dict(resonance_optimizer="adamw"),
    "adamw_state": dict(resonance_optimizer="adamw_state"),
}
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["up_proj", "down_proj"], init_lora_weights=False)


@pytest.fixture(scope="module")
def data():
    scored = make_math_problems(7, seed=5, flaw_rate=0.5)  # uneven lengths
    reference = make_math_problems(4, seed=11, flaw_rate=0.0)
    return scored, reference


QUIET = dict(report_to="none", use_cpu=True, disable_tqdm=True, resonance_resume=False)


def make_trainer(tmp_path, dataset, kind, arch="llama", **options):
    """A float64 tiny-model trainer scoring full weights or (kind "lora") a LoRA adapter with B != 0."""
    model_dir = cached_tiny_model(arch=arch)
    options = {**QUIET, "resonance_chunk_mb": 1, **options}  # 1 MiB: several row chunks per target
    eager = {"experts_implementation": "eager"} if "moe" in arch else {}  # grouped-mm experts refuse float64
    return ResonanceTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, **eager),
        args=ResonanceConfig(output_dir=str(tmp_path), **options),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(**LORA) if kind == "lora" else None,
    )


def rows_of(trainer, dataset):
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(len(dataset)))))
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in sorted(prepared, key=lambda r: r[ROW_ID])]


def autograd_gradients(trainer, rows):
    """One plain autograd call per row: the gradient of its mean completion-token loss at every target, as the
    scored matrix (the parameter itself for plain linears; transposed, or the up part, for Conv1D / fused ones)."""
    model, targets = trainer.model, trainer.resonance_targets
    out = []
    with scoring_mode(model, targets):
        for row in rows:
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1]
            loss = F.cross_entropy(logits, torch.tensor(row["labels"])[1:], ignore_index=-100)
            grads = torch.autograd.grad(loss, [t.weight for t in targets])
            out.append([t.as_matrix(g.detach()) for t, g in zip(targets, grads)])
    return out


def real_step(name, w, g, exp_avg_sq=None):
    """The weight change of one real torch optimizer step on gradient `g` (the raw gradient for "grad")."""
    if name == "grad":
        return g
    p = torch.nn.Parameter(w.clone())
    if name == "sgd":
        opt = torch.optim.SGD([p], lr=1e-2, weight_decay=WD)
    else:
        opt = torch.optim.AdamW([p], lr=LR, weight_decay=WD, eps=EPS)
        if name == "adamw_state":  # settled: zero first moment, mean g^2 second moment, no bias correction
            opt.state[p] = {
                "step": torch.tensor(float(SETTLED), dtype=torch.float64),
                "exp_avg": torch.zeros_like(w),
                "exp_avg_sq": exp_avg_sq.clone(),
            }
    p.grad = g.clone()
    opt.step()
    return p.detach() - w


def expected_alignment(trainer, scored, reference, name):
    weights = [t.matrix.clone() for t in trainer.resonance_targets]
    grads = autograd_gradients(trainer, rows_of(trainer, scored))
    ref_grads = autograd_gradients(trainer, rows_of(trainer, reference))
    settled = [torch.stack([g[k] ** 2 for g in grads]).mean(0) for k in range(len(weights))]

    def step(gs):
        return torch.cat([real_step(name, w, g, v).flatten() for w, g, v in zip(weights, gs, settled)])

    mean_ref = torch.stack([step(gs) for gs in ref_grads]).mean(0)
    return np.array([float(F.cosine_similarity(step(gs), mean_ref, dim=0)) for gs in grads])


@pytest.mark.parametrize("kind", ["weights", "lora"])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_alignment_equals_a_batch_size_one_autograd_loop(tmp_path, data, kind, name):
    scored, reference = data
    trainer = make_trainer(tmp_path, scored, kind, resonance_target=kind, **TRANSFORMS[name])
    assert len(trainer.resonance_targets) == (6 if kind == "lora" else 3)
    expected = expected_alignment(trainer, scored, reference, name)
    assert np.abs(expected).min() > 1e-3, "cosines near zero would make the relative check meaningless"
    for batch_size in (1, 5):
        trainer.args.resonance_batch_size = batch_size
        out = trainer.score(scored, reference=reference)
        got = np.array(out["resonance_alignment"])
        rel = np.max(np.abs(got - expected) / np.abs(expected))
        print(f"alignment parity {kind} {name} batch {batch_size}: max relative error {rel:.2e}")
        assert rel <= 1e-9, (batch_size, got, expected)
    info = read_provenance(out)["scoring"]["reference"]
    assert info["n_rows"] == info["n_used"] == len(reference)


@pytest.mark.parametrize("arch", ["gpt2", "phi3", "qwen2_moe"])
def test_alignment_on_conv1d_fused_and_expert_targets(tmp_path, data, arch):
    """GPT-2's transposed Conv1D, Phi-3's fused gate_up (up half) and Qwen2-MoE's 3-D experts (per-sample
    gradients by autograd): the same parity, fresh AdamW."""
    scored, reference = data
    trainer = make_trainer(tmp_path, scored, "weights", arch=arch)
    expected = expected_alignment(trainer, scored, reference, "adamw")
    got = np.array(trainer.score(scored, reference=reference)["resonance_alignment"])
    rel = np.max(np.abs(got - expected) / np.abs(expected))
    print(f"alignment parity {arch} adamw: max relative error {rel:.2e}")
    assert rel <= 1e-9


def test_lora_alignment_is_over_the_adapter_steps_whatever_the_lora_delta(tmp_path, data):
    scored, reference = data
    got = {}
    for delta in ("adapter", "effective"):
        trainer = make_trainer(tmp_path / delta, scored, "lora", resonance_lora_delta=delta)
        got[delta] = trainer.score(scored, reference=reference)
    np.testing.assert_array_equal(got["adapter"]["resonance_alignment"], got["effective"]["resonance_alignment"])
    assert not np.allclose(got["adapter"]["resonance"], got["effective"]["resonance"], rtol=1e-3)


def test_resumed_scores_are_kept_per_reference_set(tmp_path, data):
    """Resume files are keyed by the reference set too: another reference set is scored afresh, not resumed."""
    scored, reference = data
    trainer = make_trainer(tmp_path, scored, "weights", resonance_resume=True)
    first = trainer.score(scored, reference=reference)["resonance_alignment"]
    other = trainer.score(scored, reference=make_math_problems(4, seed=12, flaw_rate=0.0))["resonance_alignment"]
    again = trainer.score(scored, reference=reference)["resonance_alignment"]
    assert len(list((tmp_path / "resonance").iterdir())) == 2
    assert np.max(np.abs(np.array(first) - np.array(other))) > 1e-3
    np.testing.assert_array_equal(again, first)


def test_inflight_alignment_uses_the_reference_step_of_the_starting_weights(tmp_path, data):
    """R in flight is taken once, from the weights train() starts from; the first step's batch (every row, at the
    starting weights) then aligns as score() does there.

    In-flight gradients come through TRL's fused LM head, which rounds dL/dy to float32 even for a float64 model;
    summed over tokens, the raw per-sample gradients then agree with score()'s to ~5e-4 relative (fresh AdamW
    saturates it away from the paper's score, not from a cosine): hence 2e-3 here. The second step sees new
    weights, and still the starting R.
    """
    scored, reference = data
    path = tmp_path / "reference.jsonl"
    reference.to_json(str(path))
    trainer = make_trainer(
        tmp_path, scored, "weights", resonance_reference=str(path), resonance_when="inflight",
        per_device_train_batch_size=len(scored), max_steps=2, learning_rate=1e-2, save_strategy="no",
        **TRANSFORMS["grad"],
    )  # fmt: skip
    before = np.array(trainer.score()["resonance_alignment"])  # the config's reference, at the starting weights
    fresh = make_trainer(tmp_path / "fresh", scored, "weights", **TRANSFORMS["grad"])
    scorer = fresh.scorer()
    expected = attach_reference(scorer, rows_of(fresh, reference)).steps
    trainer.train()
    got = trainer._resonance_recorder.spec.reference.steps
    for name, step in expected.items():
        torch.testing.assert_close(got[name], step, rtol=1e-12, atol=0)
    out = trainer.scored_dataset
    np.testing.assert_allclose(out["resonance_alignment_epoch0"], before, rtol=2e-3)
    assert np.isfinite(out["resonance_alignment_epoch1"]).all()
    assert np.max(np.abs(np.array(out["resonance_alignment_epoch1"]) - before)) > 1e-2, "the second step moved"
    info = read_provenance(out)["scoring"]["reference"]
    assert info["source"] == str(path) and info["n_used"] == len(reference)


def test_reference_without_usable_rows_is_an_error(tmp_path, data):
    scored, reference = data
    trainer = make_trainer(tmp_path, scored, "weights")
    empty = reference.map(lambda row: {"completion": " "})
    with pytest.raises(ValueError, match="`resonance_reference` has no row to take a step on: all 4 rows"):
        trainer.score(scored, reference=empty)
    with pytest.raises(ValueError, match=r"`resonance_reference` row 1: `prompt` and .* `completion` is None"):
        trainer.score(scored, reference=Dataset.from_dict({"prompt": ["a", "b"], "completion": ["c", None]}))
    with pytest.raises(TypeError, match="`resonance_reference` must be a datasets.Dataset or a path, got list"):
        trainer.score(scored, reference=[{"prompt": "a", "completion": "b"}])


def test_toy_alignment_recipe_through_the_cli(tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "toy" / "score_alignment.yaml"
    out = tmp_path / "scored.parquet"
    command = [sys.executable, "-m", "resofilter_hf.cli", "score", "--config", str(recipe), "--disable_tqdm", "true",
               "--dataset_name", "toy:math?n=12&seed=0&flaw_rate=0.5", "--output_dir", str(tmp_path),
               "--scores_path", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    table = load_scored(out)
    alignment = np.array(table["resonance_alignment"])
    assert len(table) == 12 and np.isfinite(alignment).all() and (np.abs(alignment) <= 1).all()
    info = read_provenance(table)["scoring"]["reference"]
    assert info["n_rows"] == info["n_used"] == 128
    assert info["source"] == str(tmp_path / "resonance_reference.parquet")


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "adamw_state"])
def test_two_ranks_share_the_reference_pass_and_align_like_one(tmp_path, data, optimizer):
    """torchrun, 2 ranks (gloo on CPU): the reference rows and the settled moments are split across ranks and
    reduced, and every rank returns the single-process alignment."""
    scored, reference = data
    script = Path(__file__).resolve().parents[1] / "scripts" / "align_two_ranks.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(cached_tiny_model(arch="llama")), str(tmp_path), optimizer]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    trainer = make_trainer(tmp_path / "single", scored, "weights", resonance_optimizer=optimizer)
    single = np.array(
        trainer.score(scored, reference=make_math_problems(5, seed=11, flaw_rate=0.0))["resonance_alignment"]
    )
    for rank in (0, 1):
        got = json.loads((tmp_path / f"alignment_rank{rank}.json").read_text())
        assert got["world_size"] == 2 and got["n_used"] == 5
        np.testing.assert_allclose(got["alignment"], single, rtol=1e-12)
