"""`ResonanceTrainer.score()`: columns, row accounting, statuses, errors, and a model left untouched."""

import random
import warnings

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.toy import cached_tiny_model, make_math_problems


@pytest.fixture(scope="module")
def model_dir():
    return cached_tiny_model(arch="llama")


def trainer_for(model_dir, dataset, tmp_path, model=None, **kwargs):
    args = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True)
    args.update(kwargs)
    model = model or AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return ResonanceTrainer(
        model=model, args=ResonanceConfig(**args), train_dataset=dataset, processing_class=tokenizer
    )


def test_columns_types_order_and_provenance(model_dir, tmp_path):
    dataset = make_math_problems(9, seed=1)
    trainer = trainer_for(model_dir, dataset, tmp_path, resonance_batch_size=4, resonance_anatomy=True)
    scored = trainer.score()
    assert scored.column_names == dataset.column_names + [
        "resonance",
        "resonance_loss",
        "resonance_tokens",
        "resonance_toward_zero",
        "resonance_below_eps",
        "resonance_grad_norm",
        "resonance_status",
        "resonance_truncated",
    ]
    assert scored.features["resonance"].dtype == "float64"
    assert scored.features["resonance_tokens"].dtype == "int64"
    assert scored["prompt"] == dataset["prompt"]  # input order, every row
    assert scored["resonance_status"] == ["ok"] * 9
    assert np.all(np.isfinite(scored["resonance"]))
    shares = np.array(list(scored["resonance_toward_zero"]) + list(scored["resonance_below_eps"]))
    assert np.all((shares >= 0) & (shares <= 1))
    provenance = read_provenance(scored)["scoring"]
    assert provenance["target"] == "weights"
    assert provenance["layers"] == [1, 2, 3]
    assert provenance["n_rows"] == provenance["n_scored"] == 9
    assert provenance["lr"] == 1e-5 and provenance["optimizer"] == "adamw"


def test_loss_and_token_columns_match_a_plain_forward(model_dir, tmp_path):
    dataset = make_math_problems(4, seed=2)
    trainer = trainer_for(model_dir, dataset, tmp_path)
    scored = trainer.score()
    prepared = trainer.prepare_scoring_dataset(dataset)
    for row, loss, tokens in zip(prepared, scored["resonance_loss"], scored["resonance_tokens"]):
        labels = torch.tensor(row["labels"])
        with torch.no_grad():
            logits = trainer.model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1]
        expected = torch.nn.functional.cross_entropy(logits, labels[1:], ignore_index=-100)
        assert tokens == int((labels[1:] != -100).sum())
        assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_shuffled_preparation_still_returns_input_order(model_dir, tmp_path):
    dataset = make_math_problems(8, seed=3)
    plain = trainer_for(model_dir, dataset, tmp_path / "a").score()
    shuffled = trainer_for(model_dir, dataset, tmp_path / "b", shuffle_dataset=True).score()
    np.testing.assert_allclose(shuffled["resonance"], plain["resonance"], rtol=1e-6)


def test_unscored_rows_get_nan_a_status_and_one_warning(model_dir, tmp_path):
    rows = make_math_problems(5, seed=4).to_list()
    rows[1]["completion"] = ""  # empty completion
    rows[3]["prompt"] = "word " * 400  # the prompt alone fills max_length: truncated away
    dataset = Dataset.from_list(rows)
    trainer = trainer_for(model_dir, dataset, tmp_path, max_length=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scored = trainer.score()
    ours = [w for w in caught if "no resonance score" in str(w.message)]
    assert len(ours) == 1 and "2 of 5 rows" in str(ours[0].message)
    assert scored["resonance_status"] == ["ok", "empty_completion", "ok", "truncated", "ok"]
    assert np.isnan(scored["resonance"][1]) and np.isnan(scored["resonance"][3])
    assert np.isfinite([scored["resonance"][i] for i in (0, 2, 4)]).all()
    assert len(scored) == 5


def _conversation(content):
    return {
        "prompt": [{"role": "user", "content": "What is 1+1?"}],
        "completion": [{"role": "assistant", "content": content}],
    }


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [{"prompt": "What is 1+1?\n", "completion": "#### 2"}] * 2 + [{"prompt": "Q\n", "completion": None}],
            r"row 2: `prompt` and `completion` must both be strings.*`completion` is None",
        ),
        ([_conversation("#### 2"), _conversation(None)], r"row 1: `completion\[0\]\['content'\]` must be a string"),
        ([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [], "labels": []}], r"row 1: `input_ids`"),
        ([{"input_ids": [1, 2, 3], "labels": [1, 2]}], r"row 0: `labels` has 2 entries for 3"),
    ],
)
def test_malformed_rows_fail_before_compute_naming_the_row(model_dir, tmp_path, rows, message):
    trainer = trainer_for(model_dir, make_math_problems(2), tmp_path)
    calls = []
    trainer.model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=message):
        trainer.score(Dataset.from_list(rows))
    assert calls == [], "no forward pass may run before the rows are checked"


def test_unknown_module_lists_candidates(model_dir, tmp_path):
    dataset = make_math_problems(2, seed=0)
    with pytest.raises(ValueError, match=r"\['mlp\.nope'\] matched no module.*mlp\.up_proj.*self_attn\.q_proj"):
        trainer_for(model_dir, dataset, tmp_path, resonance_modules=["mlp.nope"]).score()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("resonance_metric", "median", "resonance_metric='median' is not one of 'mean_abs', 'l2', 'max_abs', 'std'"),
        ("resonance_lr", 0.0, r"`resonance_lr` must be between 1e-12 and 100, got 0.0"),
        ("resonance_last_n_layers", 0, r"`resonance_last_n_layers` must be >= 1"),
        ("resonance_column", "resonance_loss", r"`resonance_column` must be a non-empty name"),
        ("resonance_target", "lora", r"needs a PEFT model"),
    ],
)
def test_bad_options_name_the_field(model_dir, tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        trainer_for(model_dir, make_math_problems(2), tmp_path, **{field: value}).score()  # targets: on first use


def _hook_counts(model):
    return [
        (name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
        for name, m in model.named_modules()
    ]


def test_model_is_left_exactly_as_it_was(model_dir, tmp_path):
    dataset = make_math_problems(6, seed=6)
    trainer = trainer_for(model_dir, dataset, tmp_path, resonance_batch_size=4)
    model = trainer.model
    model.train()
    model.model.layers[0].eval()  # a mixed mode must survive too
    for name, p in model.named_parameters():
        p.requires_grad_("layers.2" not in name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [(n, m.training) for n, m in model.named_modules()]
    flags = [(n, p.requires_grad) for n, p in model.named_parameters()]
    hooks = _hook_counts(model)
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())

    trainer.score()

    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [(n, m.training) for n, m in model.named_modules()] == modes
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == flags
    assert _hook_counts(model) == hooks
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng[0])
    assert random.getstate() == rng[1]
    assert np.array_equal(np.random.get_state()[1], rng[2])


def test_resume_skips_rows_already_scored(model_dir, tmp_path):
    dataset = make_math_problems(6, seed=7)
    trainer = trainer_for(model_dir, dataset, tmp_path, resonance_resume=True, resonance_batch_size=2)
    first = trainer.score()
    (folder,) = [p for p in (tmp_path / "resonance").iterdir() if p.is_dir()]
    shards = sorted(folder.glob("w000000-s*.parquet"))
    assert len(shards) == 3  # 6 rows in batches of 2, one batch per shard
    # a crash between a shard and its marker: the shard is redone; the others are read back as they are
    shards[1].with_suffix(".done").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.done")}
    second = trainer.score()
    assert list(second["resonance"]) == list(first["resonance"])
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.done") if p.name in kept} == kept
    assert shards[1].with_suffix(".done").is_file()


def test_config_defaults_work_on_a_machine_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("the fallback only applies without a bf16 accelerator")
    args = ResonanceConfig(str(tmp_path))  # SFTConfig(str(tmp_path)) raises here: bf16 on a CPU-only machine
    assert args.bf16 is False
    with pytest.raises(ValueError, match="bf16"):
        from trl import SFTConfig

        SFTConfig(str(tmp_path))


def test_sharded_weights_are_refused(model_dir):
    """DeepSpeed ZeRO-3 leaves each rank an empty placeholder of a partitioned weight."""
    from resofilter_hf.engine.targets import find_targets

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.model.layers[3].mlp.up_proj.weight = torch.nn.Parameter(torch.empty(0))
    with pytest.raises(ValueError, match=r"layers\.3\.mlp\.up_proj\.weight is sharded"):
        find_targets(model, ["mlp.up_proj"], 3, "weights")
