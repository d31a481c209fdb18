"""The quality story at small scale: do resonance scores find flawed rows, and does dropping them pay?

On the toy world (synthetic math problems with labelled flaws), one seed:

1. build a tiny model and warm it up on a separate clean set, so it knows the answer format;
2. score a flawed pool with the resonance variants, alignment with a trusted clean reference set, and the
   baselines (`story_steps.SCORERS`, `baselines.BASELINES`);
3. AUROC of every score against the flaw labels, per flaw type (higher score = flagged as flawed; low alignment);
4. retrain from the warmed model on keep-50% by each of `StorySettings.selections` (the paper's score, alignment,
   loss, random), on the full flawed pool, and on the same questions with no flaws (the clean pool: what the
   flaws cost);
5. held-out loss and greedy final-answer accuracy on clean test problems; a table, plots, and a few sentences
   that say what moved (`what_moved`), with the test set's noise and the caveat that one seed shows no effect.

`run_story` is what `resofilter demo` calls. The steps are in `story_steps`, the tables in `story_tables`, the
figures in `plots`; the source repository's quality benchmark runs the same steps over seeds and more selections.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ..confounds import confound_report
from ..engine.files import write_atomic
from ..provenance import read_provenance, write_parquet
from ..sweep import ProxySettings, train_and_evaluate
from .plots import plot_histograms, plot_roc, plot_sweep
from .settings import StorySettings
from .story_steps import (
    ALIGNMENT,
    build_base,
    clean_pool,
    make_reference,
    make_world,
    retrain_selections,
    score_columns,
    score_pool,
    warm_up,
)
from .story_tables import auroc_table, selection_makeup, story_table


STEP_TITLES = {
    "data": "generating the toy world: a warm-up set, a flawed pool, clean test problems, a trusted reference set",
    "model": "building the tiny base model",
    "warmup": "warming the model up on the clean set (so it knows the answer format)",
    "score": "scoring the pool: resonance variants, alignment with the reference set, and baselines",
    "retrain": "retraining on keep-50% selections, the full pool and the clean pool; evaluating on the test problems",
}


def score_story_pool(
    settings: StorySettings, model_dir: str | Path, pool, work: str | Path, seed: int, reference=None
):
    """`score_pool` with the story's scorers, batch size and length: the demo and the quality bench score alike.
    `reference` is the trusted set the alignment scorers need."""
    return score_pool(
        model_dir,
        pool,
        work,
        scorers=settings.scorers,
        reference=reference,
        seed=seed,
        batch_size=settings.scoring_batch_size,
        max_length=settings.proxy.max_length,
    )


class _Steps:
    """Runs the numbered steps, printing a line before each (with `progress`) and timing each."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable, *args, **kwargs):
        if self.progress:
            print(f"[{list(STEP_TITLES).index(name) + 1}/{len(STEP_TITLES)}] {STEP_TITLES[name]}", flush=True)
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - t0, 2)
        return value


def run_story(
    output_dir: str | Path,
    seed: int = 0,
    quick: bool = False,
    settings: StorySettings | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the story into `output_dir`; return its tables (also in ``story.json``) and the plot paths.

    `threads` sets torch's thread count first (None leaves it). Tiny models run fastest on 1 thread, and more
    threads slow them down badly when other processes share the cores.

    Keys: "auroc" (scorer x flaw rows), "selections" (one row per retrained selection: column, keep, n_train,
    heldout_loss, accuracy, ...; "full" is the whole flawed pool, "clean" the same questions with no flaws),
    "makeup" (flawed share of each selection), "table" (the markdown summary), "what_moved" (sentences),
    "plots", "settings", "timings_s".
    """
    settings = settings or (StorySettings.quick() if quick else StorySettings.basic())
    settings.check_pool()
    if progress:  # a line per step, tqdm bars while training
        settings = settings.with_progress()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    out, started, step = Path(output_dir), time.perf_counter(), _Steps(progress)
    work = out / "work"
    warm, pool, test, clean_pool, reference = step("data", _world, settings, seed)
    base = step("model", build_base, settings, seed, work / "base-model")
    warmed = step("warmup", warm_up, base, warm, settings.warmup, seed, work)
    scored = step("score", score_story_pool, settings, warmed, pool, work, seed, reference)
    write_parquet(scored, out / "scored.parquet", read_provenance(scored))
    selections = step("retrain", _retrain_all, settings, warmed, scored, clean_pool, test, seed, work)
    result = _tables_and_plots(scored, selections, settings, out)
    result = {
        "seed": seed,
        "quick": quick,
        "torch_threads": _threads(),
        "settings": asdict(settings),
        "n": {"warmup": len(warm), "pool": len(pool), "test": len(test), "reference": len(reference or [])},
        "flaw_counts": {f: pool["flaw"].count(f) for f in sorted(set(pool["flaw"]))},
        **result,
        "timings_s": {**step.timings, "total": round(time.perf_counter() - started, 2)},
    }
    write_atomic(out / "story.json", json.dumps(result, indent=2, default=str) + "\n")
    return result


def _world(settings: StorySettings, seed: int):
    """`make_world`'s three sets, the clean twin of the pool (the same questions, no flaws) and the reference set."""
    warm, pool, test = make_world(settings, seed)
    return warm, pool, test, clean_pool(settings, seed, pool), story_reference(settings, seed, pool, test)


def story_reference(settings: StorySettings, seed: int, pool, test):
    """The trusted reference set of `settings.n_reference` clean problems (None for 0), disjoint from pool and
    test; an alignment scorer without one is an error that names the setting."""
    wanted = [s for s in settings.scorers if s in ALIGNMENT]
    if settings.n_reference <= 0:
        if wanted:
            raise ValueError(f"StorySettings: scorer(s) {wanted} need a reference set: set n_reference > 0")
        return None
    return make_reference(settings.n_reference, seed, exclude=[*pool["prompt"], *test["prompt"]], level=settings.level)


def full_pool_steps(settings: StorySettings) -> int:
    """Optimizer steps of `settings.proxy` on the full pool: batches per epoch (the last one partial) x epochs."""
    return math.ceil(math.ceil(settings.n_pool / settings.proxy.batch_size) * settings.proxy.epochs)


def retraining_proxy(settings: StorySettings) -> ProxySettings:
    """`settings.proxy` as every selection is retrained: with `equal_steps` (and no explicit `max_steps`), run for
    the full pool's number of optimizer steps (`full_pool_steps`) whatever the selection's size."""
    proxy = settings.proxy
    if settings.equal_steps and proxy.max_steps <= 0:
        proxy = replace(proxy, max_steps=full_pool_steps(settings))
    return proxy


def _retrain_all(settings: StorySettings, warmed: Path, scored, clean_pool, test, seed: int, work: Path) -> list:
    """Keep-`keep` by each selection column and the full pool (`retrain_selections`), then the clean pool (column
    "clean"): the accuracy the flaws cost, which a selection can at best win back."""
    proxy = retraining_proxy(settings)
    retrain = dict(columns=settings.selections, keep=settings.keep, seed=seed, work=work)
    rows = retrain_selections(warmed, scored, test, proxy, **retrain)
    clean = train_and_evaluate(warmed, clean_pool, test, proxy, seed=seed, output_dir=work / "clean-pool")
    return rows + [{"column": "clean", "keep": 1.0, "seed": seed, "n_input": len(clean_pool), **clean}]


LABELS = {
    "resonance": "the paper's score (resonance)",
    "resonance_alignment": "alignment with a trusted set",
    "baseline_loss": "loss",
    "baseline_random": "random",
}


def noise_band(a: float, b: float, n_test: int) -> float:
    """Two standard errors of the difference between accuracies `a` and `b`, each measured on `n_test` problems:
    the test set's sampling noise alone (Agresti-Caffo: one success and one failure added to each, so 0% and 100%
    have noise too). Training noise comes on top, and one seed cannot measure it."""
    n = max(n_test, 1)
    shrunk = [(p * n + 1) / (n + 2) for p in (a, b)]
    return 2 * math.sqrt(sum(p * (1 - p) / (n + 2) for p in shrunk))


def what_moved(selections: list[dict], keep: float) -> list[str]:
    """The retraining results of one seed in words: what the flaws cost (clean pool vs full flawed pool) and where
    each keep-`keep` selection lands against the full pool and against a random selection of the same size.
    A difference within `noise_band` is called within the test set's noise; the last line says that one seed
    shows no effect either way."""
    acc = {row["column"]: row["accuracy"] for row in selections}
    n_test = min((row.get("n_test", 0) for row in selections), default=0)

    def versus(a: float, b: float, name: str) -> str:
        band = noise_band(a, b, n_test)
        if abs(a - b) <= band:
            return f"within the test set's noise of {name} ({100 * (a - b):+.0f} points, noise +-{100 * band:.0f})"
        return f"{100 * abs(a - b):.0f} points {'above' if a > b else 'below'} {name}"

    lines = []
    if "clean" in acc and "full" in acc:
        lines.append(
            f"Flaws: the clean pool trains to {acc['clean']:.0%} accuracy, the full flawed pool to {acc['full']:.0%}: "
            + versus(acc["full"], acc["clean"], "the clean pool")
            + "."
        )
    for column, value in acc.items():
        if column in ("clean", "full") or "full" not in acc:
            continue
        line = f"Keep {keep:.0%} by {LABELS.get(column, column)}: {value:.0%}, " + versus(
            value, acc["full"], "the full pool"
        )
        if column != "baseline_random" and "baseline_random" in acc:
            line += ", " + versus(value, acc["baseline_random"], "random")
        lines.append(line + ".")
    steps = sorted({row["steps"] for row in selections})
    if len(steps) == 1:
        lines.append(
            f"Every run took the same {steps[0]} optimizer steps, so each kept row was seen about {1 / keep:.2g} "
            "times as often as in the full pool."
        )
    elif steps:
        lines.append(
            f"Every run took the same epochs, so smaller selections took fewer steps ({steps[0]}-{steps[-1]})."
        )
    lines.append(
        f"This is one seed on {n_test} test problems: the noise above is the test set's sampling alone (two "
        "standard errors), and training noise comes on top, so no difference here shows an effect of the "
        "selection. Rerun with other --seed values and compare before reading one as real."
    )
    return lines


def _tables_and_plots(scored, selections: list[dict], settings: StorySettings, out: Path) -> dict[str, Any]:
    """The story's AUROC and makeup tables, its markdown summary and its three figures (written under `out`)."""
    columns = score_columns(scored)
    aurocs = auroc_table(scored, columns)
    confounds = confound_report({c: scored[c] for c in columns}, scored["resonance_tokens"], scored["resonance_loss"])
    makeup = selection_makeup(scored, settings.selections, settings.keep)
    makeup += [{**row, "column": "full"} for row in selection_makeup(scored, settings.selections[:1], 1.0)]
    makeup.append({"column": "clean", "keep": 1.0, "n_kept": len(scored), "flawed_share_kept": 0.0})
    plots = {
        "histograms": str(plot_histograms(scored, columns, out / "score_histograms.png")),
        "roc": str(plot_roc(scored, [c for c in columns if c != "baseline_perplexity"], out / "roc.png")),
        "selections": str(plot_sweep(selections, out / "selections.png", title=f"keep {settings.keep:.0%} vs full")),
    }
    return {
        "auroc": aurocs,
        "confounds": confounds,
        "makeup": makeup,
        "selections": selections,
        "table": story_table(aurocs, selections, makeup, confounds),
        "what_moved": what_moved(selections, settings.keep),
        "plots": plots,
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()
