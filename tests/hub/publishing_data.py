"""Synthetic scored datasets for the card and hub tests: the columns and provenance of the scoring contract, with
scores made up (no model runs), so publishing is tested without the scorer."""

import numpy as np
from datasets import Dataset

from resofilter_hf.provenance import with_provenance


FLAWS = ("none", "wrong_answer", "off_topic")
UNSCORED = {3: "truncated", 11: "empty_completion"}  # row -> resonance_status


def scoring_provenance(n_rows: int, n_unscored: int) -> dict:
    return {
        "model_id": "tiny-org/tiny-llama",
        "model_revision": "0123456789abcdef0123456789abcdef01234567",
        "target": "weights",
        "modules": ["mlp.up_proj"],
        "layers": [1, 2, 3],
        "target_names": [f"model.layers.{i}.mlp.up_proj.weight" for i in (1, 2, 3)],
        "optimizer": "adamw",
        "lr": 1e-5,
        "eps": 1e-8,
        "weight_decay": 0.01,
        "betas": [0.9, 0.999],
        "metric": "mean_abs",
        "dtype": "float32",
        "chat_template_sha256": "ab" * 32,
        "max_length": 768,
        "column": "resonance",
        "n_rows": n_rows,
        "n_scored": n_rows - n_unscored,
        "n_unscored": n_unscored,
        "versions": {"torch": "2.13.0", "transformers": "5.24.0", "datasets": "5.2.0"},
    }


def scored_dataset(n: int = 48, seed: int = 0) -> Dataset:
    """`n` rows with prompt/completion/flaw, scores near 1e-5 that differ in the 5th digit (flawed rows higher),
    rows 3 and 11 unscored, and prompts 40.. repeating prompts 0.. (duplicates for dedup)."""
    rng = np.random.default_rng(seed)
    flaw = [FLAWS[i % 3] for i in range(n)]
    resonance = 1e-5 * (1 + 1e-4 * rng.standard_normal(n)) + np.array([FLAWS.index(f) * 2e-9 for f in flaw])
    status = ["ok"] * n
    for row, why in UNSCORED.items():
        resonance[row] = np.nan
        status[row] = why
    ds = Dataset.from_dict(
        {
            "prompt": [f"Question {i % 40}: what is {i % 40} + 1?" for i in range(n)],
            "completion": [f"It is {i % 40 + 1}. #### {i % 40 + 1}" for i in range(n)],
            "flaw": flaw,
            "resonance": resonance.tolist(),
            "resonance_loss": rng.uniform(0.5, 3.0, n).tolist(),
            "resonance_tokens": rng.integers(5, 60, n).tolist(),
            "resonance_status": status,
        }
    )
    return with_provenance(ds, scoring=scoring_provenance(n, len(UNSCORED)))
