"""In-flight scoring reports each epoch's score statistics through the Trainer's own `log()` (what `report_to`
integrations receive), and the numbers are those of the epoch's score column."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.inflight_log import score_statistics
from resofilter_hf.toy import cached_tiny_model, make_math_problems


class Capture(TrainerCallback):
    """What a `report_to` integration sees: every `on_log` call, with the state's epoch and step."""

    def __init__(self):
        self.calls = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.calls.append((state.epoch, state.global_step, dict(logs or {})))


def test_each_epoch_logs_its_score_statistics(tmp_path):
    model_dir = cached_tiny_model(arch="llama")
    dataset = make_math_problems(7, seed=5)
    args = ResonanceConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True,
        per_device_train_batch_size=3, num_train_epochs=2, logging_steps=100, save_strategy="no", seed=3,
        resonance_when="inflight", resonance_resume=False,
    )  # fmt: skip
    capture = Capture()
    trainer = ResonanceTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[capture],
    )
    trainer.train()
    logged = [(epoch, step, logs) for epoch, step, logs in capture.calls if "resonance/mean" in logs]
    assert [(epoch, step) for epoch, step, _ in logged] == [(1.0, 3), (2.0, 6)]  # 3 steps of 3, 3, 1 rows per epoch
    for k, (_, _, logs) in enumerate(logged):
        scores = np.asarray(trainer.scored_dataset[f"resonance_epoch{k}"], dtype=np.float64)
        assert logs["resonance/rows"] == 7.0 and logs["resonance/nan_share"] == 0.0
        assert logs["resonance/mean"] == pytest.approx(scores.mean(), rel=1e-12)
        assert logs["resonance/std"] == pytest.approx(scores.std(), rel=1e-9)
        assert logs["resonance/q50"] == pytest.approx(np.median(scores), rel=1e-12)
        assert logs["resonance/q05"] <= logs["resonance/q25"] <= logs["resonance/q75"] <= logs["resonance/q95"]
        assert logs["epoch"] == float(k + 1)
    # the same entries land in the state's log history, as the Trainer's own logs do
    assert sum("resonance/mean" in entry for entry in trainer.state.log_history) == 2


def test_statistics_count_nan_scores_and_survive_an_empty_epoch():
    stats = score_statistics([1.0, float("nan"), 3.0, float("inf")], "s")
    assert stats["s/rows"] == 4.0 and stats["s/nan_share"] == 0.5
    assert stats["s/mean"] == 2.0 and stats["s/q50"] == 2.0 and stats["s/q05"] == pytest.approx(1.1)
    assert score_statistics([], "s") == {"s/rows": 0.0, "s/nan_share": 0.0}
    assert score_statistics([float("nan")], "s") == {"s/rows": 1.0, "s/nan_share": 1.0}
