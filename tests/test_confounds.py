"""The confound report against a scipy-free brute-force Spearman (ranks counted pair by pair, Pearson by its
textbook sums), on hand-made columns and on a scored toy dataset's own provenance."""

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, publish_dataset, read_provenance
from resofilter_hf.confounds import confound_report, spearman
from resofilter_hf.toy import cached_tiny_model, make_math_problems


def brute_spearman(a, b):
    pairs = [(x, y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3:
        return None

    def ranks(values):  # 1 + number below + half the others equal to it
        return [1 + sum(v < u for v in values) + (sum(v == u for v in values) - 1) / 2 for u in values]

    ra, rb = ranks([x for x, _ in pairs]), ranks([y for _, y in pairs])
    n = len(pairs)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var_a, var_b = sum((x - ma) ** 2 for x in ra), sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else None


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 4, 1, 0]) == pytest.approx(-1.0)
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)); ranks (1,2,3,4,5) vs (2,1,4,3,5): sum d^2 = 4 -> 0.8
    assert spearman([0.1, 0.2, 0.3, 0.4, 0.5], [2.0, 1.0, 4.0, 3.0, 5.0]) == pytest.approx(0.8)
    assert spearman([1, 2, float("nan")], [1, 2, 3]) is None  # 2 usable rows
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) is None  # constant


def test_spearman_equals_brute_force_with_ties_and_nans():
    gen = np.random.default_rng(0)
    for _ in range(20):
        a = gen.integers(0, 6, 40).astype(float)  # many ties
        b = a * gen.choice([-1.0, 0.5, 2.0]) + gen.normal(0, 2, 40).round()
        a[gen.integers(0, 40, 5)] = np.nan
        b[gen.integers(0, 40, 3)] = np.inf
        assert spearman(a, b) == pytest.approx(brute_spearman(a.tolist(), b.tolist()), rel=1e-12, abs=1e-15)


def toy_trainer(tmp_path, dataset, **options):
    model_dir = cached_tiny_model(arch="llama")
    args = ResonanceConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, disable_tqdm=True, resonance_resume=False,
        **options,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return ResonanceTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)


def test_score_stores_the_confound_report_of_every_score_column(tmp_path):
    dataset = make_math_problems(16, seed=5, flaw_rate=0.5)
    dataset = dataset.map(lambda row, i: {"completion": "" if i == 3 else row["completion"]}, with_indices=True)
    trainer = toy_trainer(tmp_path, dataset, resonance_anatomy=True)
    with pytest.warns(UserWarning, match="1 of 16 rows have no resonance score"):
        scored = trainer.score(reference=make_math_problems(3, seed=1, flaw_rate=0.0))
    report = read_provenance(scored)["scoring"]["confounds"]
    names = ["resonance", "resonance_alignment", "resonance_toward_zero", "resonance_below_eps", "resonance_grad_norm"]
    assert sorted(report) == sorted(names)
    length, loss = scored["resonance_tokens"], scored["resonance_loss"]
    for name in names:
        values = scored[name]
        assert report[name]["n"] == 15
        assert report[name]["length"] == pytest.approx(brute_spearman(values, length), rel=1e-12)
        assert report[name]["loss"] == pytest.approx(brute_spearman(values, loss), rel=1e-12)
    assert abs(report["resonance"]["length"]) > 0.1, "the toy pool's lengths differ: a real correlation to check"

    card = (publish_dataset(scored, local_dir=tmp_path / "repo").folder / "README.md").read_text()
    lines = card.splitlines()
    start = lines.index("| score | Spearman with length (loss tokens) | Spearman with loss | rows |")
    shown = [line.split(" | ")[0].strip("| `") for line in lines[start + 2 : start + 2 + len(names)]]
    assert shown == ["resonance", *sorted(names[1:])]  # the score column first
    first = report["resonance"]
    assert lines[start + 2] == f"| `resonance` | {first['length']:.7g} | {first['loss']:.7g} | 15 |"
    assert confound_report({"s": [1.0, 2.0, 3.0]}, np.array([3, 2, 1]), None) == {
        "s": {"length": pytest.approx(-1.0), "loss": None, "n": 3}
    }


def test_inflight_scores_report_their_correlation_with_length(tmp_path):
    dataset = make_math_problems(12, seed=2, flaw_rate=0.5)
    trainer = toy_trainer(
        tmp_path, dataset, resonance_when="inflight", per_device_train_batch_size=4, max_steps=3, save_strategy="no"
    )
    tokens = trainer.score()["resonance_tokens"]  # the loss tokens each row is scored on
    trainer.train()
    scored = trainer.scored_dataset
    report = read_provenance(scored)["scoring"]["confounds"]
    assert list(report) == ["resonance_epoch0"]
    expected = brute_spearman(scored["resonance_epoch0"], [float(t) for t in tokens])
    assert report["resonance_epoch0"] == {"length": pytest.approx(expected, rel=1e-12), "loss": None, "n": 12}
