"""The steps of the quality story, each one function: make the toy world, build and warm up the base model,
score the pool (resonance variants and baselines), retrain on selections. `story.run_story` and the quality
benchmark call the same functions, so the demo and the benchmark share one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from ..baselines import BASELINES, add_baseline_columns
from ..sweep import INPUT_COLUMNS, ProxySettings, keep_ratio_sweep, save_proxy, train_proxy
from .settings import StorySettings


# Score column -> ResonanceConfig overrides of the pass that writes it. The first is the paper's score; its pass also
# writes the anatomy columns (resonance_grad_norm, resonance_toward_zero, resonance_below_eps) and the loss the free
# baselines come from. The ALIGNMENT columns need a reference set: each is the `resonance_alignment` its pass
# writes (the paper's transform, from the paper's own pass; the raw gradient, from an SGD pass without weight
# decay). Low alignment is flagged: `resofilter_hf.columns` is the one place a column's direction is declared.
SCORERS: dict[str, dict[str, Any]] = {
    "resonance": {},
    "resonance_sgd": {"resonance_optimizer": "sgd"},
    "resonance_adamw_state": {"resonance_optimizer": "adamw_state"},
    "resonance_l2": {"resonance_metric": "l2"},
    "resonance_all_layers": {"resonance_last_n_layers": None},
    "resonance_alignment": {},
    "resonance_alignment_grad": {"resonance_optimizer": "sgd", "resonance_weight_decay": 0.0},
}


ALIGNMENT = ("resonance_alignment", "resonance_alignment_grad")  # the scorers that need a reference set


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


def clean_pool(settings: StorySettings, seed: int, pool: Dataset) -> Dataset:
    """The pool's questions with correct solutions (the world of `seed` made with no flaws): the ceiling every
    selection is compared with. Refuses a `pool` whose questions it does not reproduce."""
    from dataclasses import replace

    clean = make_world(replace(settings, flaw_rate=0.0), seed)[1]
    if clean["prompt"] != pool["prompt"]:
        raise ValueError("clean_pool: the flaw-free world does not hold the pool's questions in the pool's order")
    return clean


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


def make_reference(n: int, seed: int, exclude: Sequence[str] = (), level: str = "gsm") -> Dataset:
    """A trusted reference set for the alignment scores: `n` distinct clean toy problems of `level` from a stream
    of their own (seed 30,000 + `seed`), none of them a question in `exclude` (the pool's and the test set's)."""
    from ..toy.data import make_test_problems

    return make_test_problems(n, seed=30_000 + seed, exclude=exclude, level=level)


def score_pool(
    model_dir: str | Path,
    pool: Dataset,
    work: str | Path,
    *,
    scorers: Sequence[str] | None = None,
    baselines: Sequence[str] = BASELINES,
    reference: Dataset | None = None,
    seed: int = 0,
    batch_size: int = 16,
    max_length: int = 256,
) -> Dataset:
    """`pool` with one column per scorer (`SCORERS`), the anatomy columns, and the baseline columns.

    Every scorer scores the same model state, one pass per distinct setting; "resonance" (the paper's score)
    always runs, with `resonance_anatomy`, and its trainer computes the baselines. The alignment scorers need
    `reference` (a trusted set, disjoint from the pool). `scorers` None: every scorer, alignment only with a
    reference.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..config import ResonanceConfig
    from ..reference import ALIGNMENT_COLUMN
    from ..trainer import ResonanceTrainer

    if scorers is None:
        scorers = [s for s in SCORERS if reference is not None or s not in ALIGNMENT]
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown:
        raise ValueError(f"score_pool: unknown scorer(s) {unknown}; choose from {list(SCORERS)}")
    if reference is None and any(s in ALIGNMENT for s in scorers):
        raise ValueError(f"score_pool: scorer(s) {[s for s in scorers if s in ALIGNMENT]} need a `reference` set")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = pool.select_columns([c for c in INPUT_COLUMNS if c in pool.column_names])
    scored, paper_trainer = None, None
    for overrides, score_name, alignment_name in _passes(scorers):
        args = ResonanceConfig(
            output_dir=str(Path(work) / f"score-{score_name or alignment_name}"),
            report_to="none",
            use_cpu=True,
            bf16=False,
            disable_tqdm=True,
            max_length=max_length,
            resonance_resume=False,
            resonance_batch_size=batch_size,
            resonance_anatomy=score_name == "resonance",
            **overrides,
        )
        trainer = ResonanceTrainer(model=model, args=args, train_dataset=inputs, processing_class=tokenizer)
        result = trainer.score(reference=reference if alignment_name else None)
        if scored is None:  # the paper's pass: its columns are the result's own
            scored, paper_trainer = result, trainer
            continue
        if score_name:
            scored = scored.add_column(score_name, result["resonance"])
        if alignment_name:
            scored = scored.add_column(alignment_name, result[ALIGNMENT_COLUMN])
    scored = add_baseline_columns(paper_trainer, scored, which=baselines, seed=seed)
    extra = [c for c in pool.column_names if c not in scored.column_names]
    for name in extra:  # labels and other columns of the pool ride along, in input order
        scored = scored.add_column(name, pool[name])
    return scored


def _passes(scorers: Sequence[str]) -> list[tuple[dict[str, Any], str | None, str | None]]:
    """(ResonanceConfig overrides, score column or None, alignment column or None): one scoring pass per distinct
    setting in `SCORERS`, the paper's first. A pass writes the alignment column only when one is asked of it."""
    passes: dict[tuple, list] = {}
    for name in ["resonance", *scorers]:
        entry = passes.setdefault(tuple(sorted(SCORERS[name].items())), [SCORERS[name], None, None])
        entry[2 if name in ALIGNMENT else 1] = name
    return [tuple(entry) for entry in passes.values()]


def score_columns(scored: Dataset) -> list[str]:
    """The score columns present, in a fixed order: resonance variants and alignment (`SCORERS`), anatomy, baselines."""
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
    """Keep-`keep` by each column (dropping the side `resofilter_hf.columns` declares: the highest scores, the lowest for
    alignment) and the full pool, each retrained from `model_dir` and evaluated on `test`. The full pool appears
    once, as column "full"."""
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
