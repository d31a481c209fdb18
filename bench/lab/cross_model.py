"""Do resonance scores transfer across models? Score with model A, train model B on A's kept share.

The paper scores with one model and fine-tunes others on the kept data. For one seed on the toy world:

1. model A (the story's tiny Llama, `story_steps.build_base`) and model B (another architecture and/or size,
   `ModelSpec`; both use the toy tokenizer) are built and warmed up the same way (`story_steps.warm_up`);
2. each scores the flawed pool (`story_steps.score_pool`: the paper's score, its gradient alignment with a
   clean reference set (`story_steps.make_reference`, the same rows for both models), and the free loss
   baseline);
3. the kept sets of keep-`keep` (the paper's rule, `select_by_resonance`) are compared: Jaccard of the kept rows
   (chance for two independent random keep-p subsets: p / (2 - p), 1/3 at keep 50%) and Spearman of the scores;
   the alignment score drops its lowest rows (`columns.drop_side`), every other score its highest; and each
   model's AUROC of each score against the flaw labels (`columns.flag_values`: higher = flagged);
4. model B is retrained from its warm-up state on its own selection, on A's, on a seeded random share, on the full
   pool and on the clean pool (the same questions with correct solutions: the ceiling), and evaluated on clean
   held-out problems; per seed, the paired differences own - A's, A's - random and own - random. With the
   story's `equal_steps` every arm trains for the full pool's number of optimizer steps
   (`story.retraining_proxy`), so a kept half is seen twice as often; without it, for the proxy's epochs.

`run_cross_model_seed` returns every table for one seed; the source repository's cross-model benchmark runs it
over seeds and aggregates with `sweep.summarize`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from resofilter_hf.columns import drop_side, flag_values
from resofilter_hf.demo.stats import auroc, rank_correlation
from resofilter_hf.demo.story import StorySettings, retraining_proxy
from resofilter_hf.demo.story_steps import (
    ALIGNMENT,
    build_base,
    clean_pool,
    make_reference,
    make_world,
    score_pool,
    warm_up,
)
from resofilter_hf.engine.rows import ROW_ID
from resofilter_hf.provenance import load_scored, read_provenance, write_parquet
from resofilter_hf.selection import select_by_resonance
from resofilter_hf.sweep import evaluate_proxy, keep_ratio_sweep, proxy_trainer, train_and_evaluate


AGREEMENT_BASELINES = ("baseline_loss",)  # compared across the models too (free, from the scoring pass)
RANDOM = "baseline_random"


@dataclass(frozen=True)
class ModelSpec:
    """A tiny model of `arch` (a key of `resofilter_hf.toy.model.ARCHITECTURES`) and its sizes; the paper's score
    reads the last 3 decoder layers, so `num_layers` >= 3."""

    arch: str = "qwen2"
    num_layers: int = 4
    hidden_size: int = 64
    intermediate_size: int = 256
    num_heads: int = 4
    num_kv_heads: int = 2

    def build(self, folder: str | Path, seed: int, level: str) -> Path:
        """The randomly initialised model with the toy tokenizer of `level`'s text (`story_steps.build_base`'s
        tokenizer: the same one whatever the architecture and sizes)."""
        from resofilter_hf.toy.data import toy_corpus
        from resofilter_hf.toy.model import build_tiny_model

        sizes = {k: v for k, v in asdict(self).items() if k != "arch"}
        return build_tiny_model(folder, seed=seed, arch=self.arch, corpus=toy_corpus(level=level), **sizes)


@dataclass(frozen=True)
class CrossModelSettings:
    """`story`: the world, model A's sizes, the warm-up and retraining settings and `keep` (shared by both models;
    `StorySettings.basic()` has `equal_steps` on: every arm of B trains for the full pool's optimizer steps);
    `model_b`: the second model (the default: a Qwen2 with about the training cost of the basic world's Llama
    on one CPU thread); `scorers`: the score columns (keys of `story_steps.SCORERS`) both models write
    and B is retrained on; `n_reference`: clean reference rows for the alignment scorers."""

    story: StorySettings = field(default_factory=StorySettings.basic)
    model_b: ModelSpec = field(default_factory=ModelSpec)
    scorers: tuple[str, ...] = ("resonance", "resonance_alignment")
    n_reference: int = 128

    def model_a(self) -> ModelSpec:
        s = self.story
        return ModelSpec("llama", s.num_layers, s.hidden_size, s.intermediate_size, s.num_heads, s.num_kv_heads)


# ---- kept-set agreement ----------------------------------------------------------------------------------------


def jaccard(a: Iterable, b: Iterable) -> float:
    """|a & b| / |a | b| of two collections taken as sets; NaN when both are empty."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else math.nan


def chance_jaccard(keep: float) -> float:
    """Jaccard of two independent uniformly random keep-`keep` subsets of a large set: p^2 / (2p - p^2)."""
    return keep / (2.0 - keep)


def kept_rows(scored: Dataset, column: str, keep: float, drop: str | None = None) -> list[int]:
    """Row indices of `scored` that keep-`keep` by `column` keeps (the paper's rule; `drop` defaults to
    `columns.drop_side(column)`), ascending."""
    indexed = scored.add_column(ROW_ID, list(range(len(scored))))
    drop = drop or drop_side(column)
    return list(select_by_resonance(indexed, keep=keep, column=column, drop=drop)[ROW_ID])


def agreement(scored_a: Dataset, scored_b: Dataset, column: str, keep: float) -> dict[str, Any]:
    """How alike the two models' keep-`keep` selections by `column` are (both scored the same rows, in order)."""
    if len(scored_a) != len(scored_b):
        raise ValueError(f"agreement: the scored sets differ in length ({len(scored_a)} vs {len(scored_b)})")
    kept_a, kept_b = kept_rows(scored_a, column, keep), kept_rows(scored_b, column, keep)
    return {
        "column": column,
        "keep": keep,
        "n_kept_a": len(kept_a),
        "n_kept_b": len(kept_b),
        "n_kept_both": len(set(kept_a) & set(kept_b)),
        "jaccard": jaccard(kept_a, kept_b),
        "chance_jaccard": chance_jaccard(keep),
        "spearman": rank_correlation(scored_a[column], scored_b[column]),
    }


def flawed_share(pool: Dataset, rows: Sequence[int]) -> float:
    flaws = np.asarray(pool["flaw"])[np.asarray(rows, dtype=np.int64)]
    return float((flaws != "none").mean()) if len(flaws) else math.nan


# ---- the models ------------------------------------------------------------------------------------------------


def warmed_model(name: str, build, warm: Dataset, settings: CrossModelSettings, seed: int, work: Path) -> Path:
    """`build(folder)` warmed up on `warm` under work/<name>; a warmed model already there is reused."""
    folder = work / name
    done = folder / "warm-model"
    if (done / "config.json").exists():
        return done
    return warm_up(build(folder / "base-model"), warm, settings.story.warmup, seed, folder)


def scored_pool(
    model_dir: Path, pool: Dataset, reference: Dataset | None, settings: CrossModelSettings, seed: int, work: Path
) -> Dataset:
    """`pool` scored by `model_dir` (score columns, loss, random); cached as work/scored.parquet."""
    cached = work / "scored.parquet"
    if cached.exists():
        return load_scored(cached)
    s = settings.story
    scored = score_pool(
        model_dir,
        pool,
        work,
        scorers=settings.scorers,
        baselines=("loss", "random"),
        reference=reference,
        seed=seed,
        batch_size=s.scoring_batch_size,
        max_length=s.proxy.max_length,
    )
    write_parquet(scored, cached, read_provenance(scored))
    return scored


def parameter_count(model_dir: Path) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return sum(p.numel() for p in model.parameters())


def warm_eval(model_dir: Path, test: Dataset, settings: CrossModelSettings, seed: int, work: Path) -> dict:
    """Held-out loss and accuracy of a warmed model before any pool training."""
    proxy = settings.story.proxy
    trainer = proxy_trainer(model_dir, test, proxy, seed=seed, output_dir=work / "warm-eval")
    return {
        "arm": "warm",
        "score": None,
        "column": None,
        "keep": None,
        "n_train": 0,
        "steps": 0,
        **evaluate_proxy(trainer, test, proxy),
    }


# ---- retraining model B ----------------------------------------------------------------------------------------


def joint_pool(pool: Dataset, scored: dict[str, Dataset], columns: Sequence[str]) -> Dataset:
    """`pool` plus `a_<column>` and `b_<column>` for every score column, and the seeded random column."""
    joint = pool
    for model in ("a", "b"):
        for column in columns:
            joint = joint.add_column(f"{model}_{column}", scored[model][column])
    return joint.add_column(RANDOM, scored["a"][RANDOM])


def retrain_b(
    warmed_b: Path,
    joint: Dataset,
    clean: Dataset,
    test: Dataset,
    settings: CrossModelSettings,
    *,
    seed: int,
    work: Path,
) -> list[dict[str, Any]]:
    """Model B retrained from its warm-up state on each arm: one row per arm, with the flawed share of its rows.

    Arms: "own" and "a" (keep-`keep` by B's and by A's score, per score column), "random" (keep-`keep` by the
    seeded random column), "full" (the whole pool), "clean" (the clean pool); each for the optimizer steps of
    `story.retraining_proxy` (with `equal_steps`: the full pool's, whatever the arm's size)."""
    keep, proxy = settings.story.keep, retraining_proxy(settings.story)
    common = {"settings": proxy, "seed": seed, "output_dir": work / "runs", "cache": {}}

    def arm(run: dict, name: str, score: str | None, rows: Sequence[int]) -> dict:
        return {**run, "model": "b", "arm": name, "score": score, "flawed_share": flawed_share(joint, rows)}

    runs = []
    for column in settings.scorers:
        drop = drop_side(column)
        own, from_a = keep_ratio_sweep(
            warmed_b, joint, test, keeps=(keep,), columns=(f"b_{column}", f"a_{column}"), select_kwargs={"drop": drop},
            **common,
        )  # fmt: skip
        runs.append(arm(own, "own", column, kept_rows(joint, f"b_{column}", keep, drop)))
        runs.append(arm(from_a, "a", column, kept_rows(joint, f"a_{column}", keep, drop)))
    (random_half,) = keep_ratio_sweep(warmed_b, joint, test, keeps=(keep,), columns=(RANDOM,), **common)
    (full,) = keep_ratio_sweep(warmed_b, joint, test, keeps=(1.0,), columns=(RANDOM,), **common)
    ceiling = train_and_evaluate(warmed_b, clean, test, proxy, seed=seed, output_dir=work / "clean")
    ceiling = {"column": None, "keep": 1.0, "seed": seed, "n_input": len(clean), **ceiling}
    runs.append(arm(random_half, "random", None, kept_rows(joint, RANDOM, keep)))
    runs.append(arm(full, "full", None, range(len(joint))))
    runs.append({**arm(ceiling, "clean", None, []), "flawed_share": 0.0})
    return runs


def paired_differences(runs: Sequence[dict], seed: int) -> list[dict[str, Any]]:
    """Per score column, this seed's differences in accuracy and held-out loss: own - A's, A's - random,
    own - random (B retrained in each arm)."""
    by = {(r["arm"], r["score"]): r for r in runs}
    random_half = by[("random", None)]
    out = []
    for score in dict.fromkeys(r["score"] for r in runs if r["arm"] == "own"):
        own, from_a = by[("own", score)], by[("a", score)]
        row: dict[str, Any] = {"score": score, "seed": seed}
        for metric in ("accuracy", "heldout_loss"):
            row[f"{metric}_own_minus_a"] = own[metric] - from_a[metric]
            row[f"{metric}_a_minus_random"] = from_a[metric] - random_half[metric]
            row[f"{metric}_own_minus_random"] = own[metric] - random_half[metric]
        out.append(row)
    return out


# ---- one seed --------------------------------------------------------------------------------------------------


def run_cross_model_seed(seed: int, settings: CrossModelSettings, work: str | Path) -> dict[str, Any]:
    """Every table of the cross-model comparison for one seed (module docstring). Warmed models and scored pools
    are kept under `work` and reused when it is run again."""
    work, timings = Path(work), {}
    s = settings.story
    started = time.perf_counter()
    warm, pool, test = make_world(s, seed)
    clean = clean_pool(s, seed, pool)
    columns = settings.scorers
    reference = None
    if any(c in ALIGNMENT for c in columns):
        reference = make_reference(settings.n_reference, seed, [*pool["prompt"], *test["prompt"]], s.level)
    builders = {
        "a": lambda folder: build_base(s, seed, folder),
        "b": lambda folder: settings.model_b.build(folder, seed, s.level),
    }
    warmed, scored = {}, {}
    for model, build in builders.items():
        t0 = time.perf_counter()
        warmed[model] = warmed_model(model, build, warm, settings, seed, work)
        scored[model] = scored_pool(warmed[model], pool, reference, settings, seed, work / model)
        timings[f"warmup_and_score_{model}"] = round(time.perf_counter() - t0, 1)
    flawed = np.asarray(pool["flaw"]) != "none"
    t0 = time.perf_counter()
    runs = retrain_b(warmed["b"], joint_pool(pool, scored, columns), clean, test, settings, seed=seed, work=work)
    runs += [{**warm_eval(warmed[m], test, settings, seed, work / m), "model": m} for m in ("a", "b")]
    timings["retrain_b"] = round(time.perf_counter() - t0, 1)
    timings["total"] = round(time.perf_counter() - started, 1)
    return {
        "seed": seed,
        "n": {
            "warmup": len(warm),
            "pool": len(pool),
            "test": len(test),
            "clean": len(clean),
            "reference": 0 if reference is None else len(reference),
        },
        "flaw_counts": {f: pool["flaw"].count(f) for f in sorted(set(pool["flaw"]))},
        "models": {
            "a": {**asdict(settings.model_a()), "parameters": parameter_count(warmed["a"])},
            "b": {**asdict(settings.model_b), "parameters": parameter_count(warmed["b"])},
        },
        "agreement": [agreement(scored["a"], scored["b"], c, s.keep) for c in (*columns, *AGREEMENT_BASELINES)],
        "auroc": [
            {"model": m, "column": c, "auroc_any_flaw": auroc(flag_values(scored[m][c], c), flawed)}
            for m in ("a", "b")
            for c in (*columns, *AGREEMENT_BASELINES)
        ],
        "runs": runs,
        "paired": paired_differences(runs, seed),
        "timings_s": timings,
    }
