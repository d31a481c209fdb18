"""GSM8K solutions with injected flaws, scored by a real pretrained chat model (SmolLM2-135M-Instruct).

The model is fixed (no warm-up), so a seed only changes which rows carry which flaw. Every seed's pool is made
(`gsm8k_flaws.inject_flaws`), the distinct rows of all pools are scored once as conversational prompt/completion
rows (`union_of_pools`, `score_union`: a user turn, an assistant turn, the model's chat template), and each seed
reads its rows back. `format_confound` scores the same rows as `messages` rows too (SmolLM2's template has no
generation markers, so TRL puts the loss on every token), and `toy_confound` scores the toy demo's pool (the basic
world, its own warmed-up tiny model): the Spearman of the paper's score with length in each, against
`resofilter_hf.confounds.STRONG_RHO`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset

from resofilter_hf.confounds import STRONG_RHO, confound_report, spearman, strong_confounds
from resofilter_hf.provenance import load_scored, write_parquet


def chat_rows(questions: Sequence[str], answers: Sequence[str]) -> Dataset:
    """Conversational prompt/completion rows: each question a user turn, each answer an assistant turn."""
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": q}] for q in questions],
            "completion": [[{"role": "assistant", "content": a}] for a in answers],
        }
    )


def messages_rows(questions: Sequence[str], answers: Sequence[str]) -> Dataset:
    """The same turns as one `messages` conversation per row."""
    return Dataset.from_dict(
        {
            "messages": [
                [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                for q, a in zip(questions, answers)
            ]
        }
    )


def union_of_pools(pools: Mapping[int, Dataset]) -> tuple[Dataset, dict[int, np.ndarray]]:
    """The distinct (question, completion) rows of every pool (columns ``question``, ``completion``), and for each
    seed the union index of each of its pool's rows."""
    keys: dict[tuple[str, str], int] = {}
    index = {}
    for seed, pool in pools.items():
        at = [keys.setdefault((q, c), len(keys)) for q, c in zip(pool["question"], pool["completion"])]
        index[seed] = np.asarray(at, dtype=np.int64)
    ordered = sorted(keys, key=keys.get)
    return Dataset.from_dict({"question": [q for q, _ in ordered], "completion": [c for _, c in ordered]}), index


def score_union(model_dir, union: Dataset, reference: Dataset, work: Path, settings: Mapping) -> Dataset:
    """`union` scored as chat rows by `story_steps.score_pool` (the settings' scorers and baselines, alignment with
    the chat rows of `reference`); kept in `work` as Parquet, so a rerun reads it back."""
    from resofilter_hf.demo.story_steps import score_pool

    path = Path(work) / "union_scored.parquet"
    if path.is_file():
        return load_scored(path)
    scored = score_pool(
        model_dir,
        chat_rows(union["question"], union["completion"]),
        work,
        scorers=settings["scorers"],
        baselines=settings["baselines"],
        reference=chat_rows(reference["question"], reference["answer"]),
        batch_size=settings["scoring_batch_size"],
        max_length=settings["max_length"],
    )
    write_parquet(scored, path)
    return scored


def paper_scores(model_dir, dataset: Dataset, work: Path, max_length: int, batch_size: int) -> Dataset:
    """The paper's score of `dataset` (any row kind `score()` takes) by the float32 model in `model_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from resofilter_hf import ResonanceConfig, ResonanceTrainer

    args = ResonanceConfig(
        output_dir=str(work), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, max_length=max_length,
        resonance_resume=False, resonance_batch_size=batch_size,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    )
    return trainer.score()


def format_confound(model_dir, pool: Dataset, chat_scored: Dataset, work: Path, settings: Mapping) -> dict:
    """Spearman of the paper's score with length, the same rows scored as prompt/completion (`chat_scored`) and
    as `messages`: against each format's own loss-token count (what `score()` reports) and against the answer's
    (the prompt/completion loss tokens); and what `strong_confounds` calls strong."""
    path = Path(work) / "messages_scored.parquet"
    if path.is_file():
        messages = load_scored(path)
    else:
        rows = messages_rows(pool["question"], pool["completion"])
        messages = paper_scores(
            model_dir, rows, Path(work) / "messages", settings["max_length"], settings["scoring_batch_size"]
        )
        write_parquet(messages, path)
    answer_tokens = np.asarray(chat_scored["resonance_tokens"], dtype=np.float64)
    out = {}
    for name, scored in (("prompt_completion", chat_scored), ("messages", messages)):
        score = np.asarray(scored["resonance"], dtype=np.float64)
        own = np.asarray(scored["resonance_tokens"], dtype=np.float64)
        report = confound_report({"resonance": score}, own, np.asarray(scored["resonance_loss"], dtype=np.float64))
        out[name] = {
            "rows": len(scored),
            "rho_own_loss_tokens": report["resonance"]["length"],
            "rho_answer_tokens": spearman(score, answer_tokens),
            "rho_loss": report["resonance"]["loss"],
            "mean_loss_tokens": float(np.nanmean(own)),
            "strong": [c["text"] for c in strong_confounds(report)],
            "strong_against": sorted({c["against"] for c in strong_confounds(report)}),
        }
    return out


def toy_confound(seeds: Sequence[int], work: Path) -> dict:
    """The toy demo's pool (`StorySettings.basic()`, each seed's world and warmed-up tiny model), scored by the
    paper's score as the demo scores it: Spearman with length and loss per seed, and what `strong_confounds` calls strong."""
    from dataclasses import replace

    from resofilter_hf.demo.settings import StorySettings
    from resofilter_hf.demo.story import score_story_pool
    from resofilter_hf.demo.story_steps import build_base, make_world, warm_up

    settings = replace(StorySettings.basic(), scorers=("resonance",))
    per_seed = []
    for seed in seeds:
        folder = Path(work) / f"toy-seed{seed}"
        warm, pool, _ = make_world(settings, seed)
        warmed = warm_up(build_base(settings, seed, folder / "base"), warm, settings.warmup, seed, folder)
        scored = score_story_pool(settings, warmed, pool, folder, seed)
        length = np.asarray(scored["resonance_tokens"], dtype=np.float64)
        loss = np.asarray(scored["resonance_loss"], dtype=np.float64)
        report = confound_report({"resonance": np.asarray(scored["resonance"], dtype=np.float64)}, length, loss)
        per_seed.append(
            {
                "seed": seed,
                "rows": len(scored),
                **report["resonance"],
                "strong": [c["text"] for c in strong_confounds(report)],
                "strong_against": sorted({c["against"] for c in strong_confounds(report)}),
            }
        )
    return {"settings": "StorySettings.basic()", "strong_rho": STRONG_RHO, "seeds": per_seed}
