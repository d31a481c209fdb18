"""Baseline columns against the model's own loss on single rows, exact row accounting."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.baselines import add_baseline_columns, forward_losses
from resofilter_hf.toy import cached_tiny_model, make_math_problems


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model(arch="llama")


def make_trainer(model_dir, dataset, tmp_path):
    args = ResonanceConfig(
        str(tmp_path), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, resonance_resume=False
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    )


@pytest.fixture(scope="module")
def text_case(model_dir, tmp_path_factory):
    """Six text rows, row 2 with an empty completion (unscored), scored and with every baseline."""
    rows = make_math_problems(6, seed=5).to_list()
    rows[2]["completion"] = "   "
    from datasets import Dataset

    dataset = Dataset.from_list(rows)
    trainer = make_trainer(model_dir, dataset, tmp_path_factory.mktemp("baselines"))
    with pytest.warns(UserWarning, match="no resonance score"):
        scored = trainer.score()
    return trainer, dataset, scored, add_baseline_columns(trainer, scored, seed=3)


def reference_loss(model, input_ids: list[int], n_prompt: int) -> float:
    """The model's own loss (labels with the first n_prompt tokens masked) on one unpadded row."""
    ids = torch.tensor([input_ids])
    labels = ids.clone()
    labels[0, :n_prompt] = -100
    with torch.no_grad():
        return model(input_ids=ids, labels=labels).loss.item()


def test_row_accounting_and_free_columns(text_case):
    _, dataset, scored, out = text_case
    assert len(out) == len(dataset) == 6
    assert out["prompt"] == dataset["prompt"]
    new = ["baseline_loss", "baseline_perplexity", "baseline_loss_alone", "baseline_ifd", "baseline_length"]
    assert out.column_names == scored.column_names + new + ["baseline_random"]
    for name in [*new, "baseline_random"]:
        assert out.features[name].dtype == "float64"
        values = np.asarray(out[name])
        assert np.isnan(values[2]), name  # the unscored row
        assert np.all(np.isfinite(np.delete(values, 2))), name
    loss = np.asarray(scored["resonance_loss"])
    ok = [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(np.asarray(out["baseline_loss"])[ok], loss[ok])
    np.testing.assert_allclose(np.asarray(out["baseline_perplexity"])[ok], np.exp(loss[ok]), rtol=1e-12)
    provenance = read_provenance(out)
    assert provenance["baselines"]["n_rows"] == 6 and provenance["baselines"]["n_scored"] == 5
    assert "scoring" in provenance  # the scoring section survives


def test_loss_ifd_and_length_match_the_models_own_loss_on_single_rows(text_case):
    trainer, dataset, _, out = text_case
    tokenizer, model = trainer.processing_class, trainer.model
    for i in (0, 1, 4):
        prompt, completion = dataset[i]["prompt"], dataset[i]["completion"] + tokenizer.eos_token
        n_prompt = len(tokenizer(prompt)["input_ids"])
        full = tokenizer(prompt + completion)["input_ids"]
        alone = tokenizer(completion)["input_ids"]  # BOS + completion: the prompt is ""
        given = reference_loss(model, full, n_prompt)
        without = reference_loss(model, alone, 1)
        assert out[i]["baseline_loss"] == pytest.approx(given, rel=1e-5)
        assert out[i]["baseline_loss_alone"] == pytest.approx(without, rel=1e-5)
        assert out[i]["baseline_ifd"] == pytest.approx(given / without, rel=1e-5)
        assert out[i]["baseline_length"] == len(full) - n_prompt == len(alone) - 1


def test_ifd_on_conversational_rows_uses_an_empty_user_turn(model_dir, tmp_path):
    dataset = make_math_problems(3, seed=6, style="conversational")
    trainer = make_trainer(model_dir, dataset, tmp_path)
    out = add_baseline_columns(trainer, trainer.score(), which=["ifd"])
    tokenizer = trainer.processing_class
    assert [c for c in out.column_names if c.startswith("baseline_")] == ["baseline_loss_alone", "baseline_ifd"]
    for i in range(3):
        answer = dataset[i]["completion"]
        empty = [{"role": "user", "content": ""}]
        prompt_text = tokenizer.apply_chat_template(empty, add_generation_prompt=True, tokenize=False)
        full_text = tokenizer.apply_chat_template(empty + answer, tokenize=False)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids
        without = reference_loss(trainer.model, ids, len(prompt_ids))
        assert out[i]["baseline_loss_alone"] == pytest.approx(without, rel=1e-5)
        assert out[i]["baseline_ifd"] == pytest.approx(out[i]["resonance_loss"] / without, rel=1e-5)


def test_forward_losses_leave_the_model_as_found(text_case):
    trainer, dataset, scored, _ = text_case
    trainer.model.train()
    losses, tokens = forward_losses(trainer, dataset.select([0, 1]), batch_size=2)
    assert trainer.model.training
    assert all(p.grad is None for p in trainer.model.parameters())
    np.testing.assert_allclose(losses, scored["resonance_loss"][:2], rtol=1e-5)
    assert tokens.tolist() == scored["resonance_tokens"][:2]


def test_random_is_seeded_and_other_columns_are_replaced(text_case):
    _, _, scored, out = text_case
    again = add_baseline_columns(None, out, which=["random", "loss"], seed=3)
    other = add_baseline_columns(None, scored, which=["random"], seed=4)
    a, b, c = (np.asarray(d["baseline_random"]) for d in (out, again, other))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(np.nan_to_num(a), np.nan_to_num(c))
    assert np.all((a[np.isfinite(a)] >= 0) & (a[np.isfinite(a)] < 1))
    assert again.column_names.count("baseline_random") == 1 and len(again) == len(out)


def test_errors_name_the_problem(text_case):
    trainer, dataset, scored, _ = text_case
    with pytest.raises(ValueError, match="unknown baseline"):
        add_baseline_columns(trainer, scored, which=["loss", "entropy"])
    with pytest.raises(ValueError, match="resonance_loss"):
        add_baseline_columns(trainer, dataset, which=["loss"])
    with pytest.raises(ValueError, match="needs the trainer"):
        add_baseline_columns(None, scored, which=["ifd"])
    text_only = scored.remove_columns(["prompt", "completion"]).add_column("text", ["x"] * len(scored))
    with pytest.raises(ValueError, match="prompt/completion or messages"):
        add_baseline_columns(trainer, text_only, which=["ifd"])
