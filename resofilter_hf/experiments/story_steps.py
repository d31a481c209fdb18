"""The steps of the quality story, each one function: make the toy world, build and warm up the base model,
score the pool (resonance variants and baselines), retrain on selections. `story.run_story` and the quality
benchmark call the same functions, so the demo and the benchmark share one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from .baselines import BASELINES, add_baseline_columns
from .sweep import INPUT_COLUMNS, ProxySettings, keep_ratio_sweep, save_proxy, train_proxy


if TYPE_CHECKING:  # pragma: no cover
    from .story import StorySettings


# Score column -> ResonanceConfig overrides. The first is the paper's score; it also writes the anatomy columns
# (resonance_grad_norm, resonance_toward_zero, resonance_below_eps) and the loss the free baselines come from.
SCORERS: dict[str, dict[str, Any]] = {
    "resonance": {},
    "resonance_sgd": {"resonance_optimizer": "sgd"},
    "resonance_adamw_state": {"resonance_optimizer": "adamw_state"},
    "resonance_l2": {"resonance_metric": "l2"},
    "resonance_all_layers": {"resonance_last_n_layers": None},
}


ANATOMY = ("resonance_grad_norm", "resonance_toward_zero", "resonance_below_eps")


BASELINE_COLUMNS = ("baseline_loss", "baseline_perplexity", "baseline_ifd", "baseline_length", "baseline_random")


def make_world(settings: StorySettings, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    """(warm-up set, flawed pool, clean test set): three disjoint sets of toy problems of `settings.level` (text
    prompt/completion). The pool's questions depend on `seed` only, not on the flaw rate, so a clean pool
    (``flaw_rate=0``) holds the same questions as a flawed one."""
    from ..toy.data import make_math_problems, make_test_problems

    level = settings.level
    pool = make_math_problems(settings.n_pool, seed=seed, flaw_rate=settings.flaw_rate, level=level)
    # the warm-up draws from the training stream of another seed; a question that is also in the pool is dropped
    warm = make_math_problems(settings.n_warmup, seed=10_000 + seed, flaw_rate=settings.warmup_flaw_rate, level=level)
    pool_questions = set(pool["prompt"])
    warm = warm.filter(lambda row: row["prompt"] not in pool_questions)
    test = make_test_problems(settings.n_test, seed=seed, exclude=[*pool["prompt"], *warm["prompt"]], level=level)
    return warm, pool, test


def build_base(settings: StorySettings, seed: int, folder: str | Path) -> Path:
    """A randomly initialised tiny Llama of the configured size, its tokenizer trained on `settings.level`'s text."""
    from ..toy.data import toy_corpus
    from ..toy.model import build_tiny_model

    return build_tiny_model(
        folder,
        seed=seed,
        corpus=toy_corpus(level=settings.level),
        num_layers=settings.num_layers,
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_heads=settings.num_heads,
        num_kv_heads=settings.num_kv_heads,
    )


def warm_up(model_dir: str | Path, warm: Dataset, settings: ProxySettings, seed: int, work: str | Path) -> Path:
    """Train `model_dir` on the warm-up set and save the result (the base every selection is retrained from)."""
    trainer = train_proxy(model_dir, warm, settings, seed=seed, output_dir=Path(work) / "warmup-run")
    return save_proxy(trainer, Path(work) / "warm-model")


def score_pool(
    model_dir: str | Path,
    pool: Dataset,
    work: str | Path,
    *,
    scorers: Sequence[str] = tuple(SCORERS),
    baselines: Sequence[str] = BASELINES,
    seed: int = 0,
    batch_size: int = 16,
    max_length: int = 256,
) -> Dataset:
    """`pool` with one column per resonance variant (`SCORERS`), the anatomy columns, and the baseline columns.

    Every variant scores the same model state; "resonance" (the paper's score) always runs, with
    `resonance_anatomy`, and its trainer computes the baselines.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..config import ResonanceConfig
    from ..trainer import ResonanceTrainer

    unknown = [s for s in scorers if s not in SCORERS]
    if unknown:
        raise ValueError(f"score_pool: unknown scorer(s) {unknown}; choose from {list(SCORERS)}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = pool.select_columns([c for c in INPUT_COLUMNS if c in pool.column_names])
    scored, paper_trainer = None, None
    for name in ["resonance", *(s for s in scorers if s != "resonance")]:
        args = ResonanceConfig(
            output_dir=str(Path(work) / f"score-{name}"),
            report_to="none",
            use_cpu=True,
            bf16=False,
            disable_tqdm=True,
            max_length=max_length,
            resonance_resume=False,
            resonance_batch_size=batch_size,
            resonance_column=name,
            resonance_anatomy=name == "resonance",
            **SCORERS[name],
        )
        trainer = ResonanceTrainer(model=model, args=args, train_dataset=inputs, processing_class=tokenizer)
        result = trainer.score()
        if scored is None:
            scored, paper_trainer = result, trainer
        else:
            scored = scored.add_column(name, result[name])
    scored = add_baseline_columns(paper_trainer, scored, which=baselines, seed=seed)
    extra = [c for c in pool.column_names if c not in scored.column_names]
    for name in extra:  # labels and other columns of the pool ride along, in input order
        scored = scored.add_column(name, pool[name])
    return scored


def score_columns(scored: Dataset) -> list[str]:
    """The score columns present, in a fixed order: resonance variants, anatomy, baselines."""
    order = [*SCORERS, *ANATOMY, *BASELINE_COLUMNS]
    return [c for c in order if c in scored.column_names]


def retrain_selections(
    model_dir: str | Path,
    scored: Dataset,
    test: Dataset,
    settings: ProxySettings,
    *,
    columns: Sequence[str],
    keep: float,
    seed: int,
    work: str | Path,
    cache: dict | None = None,
) -> list[dict[str, Any]]:
    """Keep-`keep` by each column (the paper's rule: highest dropped) and the full pool, each retrained from
    `model_dir` and evaluated on `test`. The full pool appears once, as column "full"."""
    cache = {} if cache is None else cache
    table = keep_ratio_sweep(
        model_dir,
        scored,
        test,
        keeps=(keep,),
        columns=columns,
        settings=settings,
        seed=seed,
        output_dir=work,
        cache=cache,
    )
    full = keep_ratio_sweep(
        model_dir,
        scored,
        test,
        keeps=(1.0,),
        columns=(columns[0],),
        settings=settings,
        seed=seed,
        output_dir=work,
        cache=cache,
    )
    return table + [{**row, "column": "full"} for row in full]
