"""The quality story at small scale: do resonance scores find flawed rows, and does dropping them pay?

On the toy world (synthetic math problems with labelled flaws), one seed:

1. build a tiny model and warm it up on a separate clean set, so it knows the answer format;
2. score a flawed pool with the resonance variants and the baselines (`SCORERS`, `baselines.BASELINES`);
3. AUROC of every score against the flaw labels, per flaw type (higher score = flagged as flawed);
4. retrain from the warmed model on keep-50% by resonance, by loss, at random, and on the full pool;
5. held-out loss and greedy final-answer accuracy on clean test problems; a table and plots.

`run_story` is what `resofilter demo` calls. The steps are in `story_steps`, the tables in `story_tables`, the
figures in `plots`; the source repository's quality benchmark runs the same steps over seeds and more selections.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..confounds import confound_report
from ..provenance import read_provenance, write_atomic, write_parquet
from .plots import plot_histograms, plot_roc, plot_sweep
from .story_steps import build_base, make_world, retrain_selections, score_columns, score_pool, warm_up
from .story_tables import auroc_table, selection_makeup, story_table
from .sweep import ProxySettings


STEP_TITLES = {
    "data": "generating the toy world: a warm-up set, a flawed pool, clean test problems",
    "model": "building the tiny base model",
    "warmup": "warming the model up on the clean set (so it knows the answer format)",
    "score": "scoring the pool: resonance variants and baselines",
    "retrain": "retraining on keep-50% selections and on the full pool; evaluating on the test problems",
}


@dataclass(frozen=True)
class StorySettings:
    """Sizes of one story run: `basic()` is the demo's and the quality benchmark's world, `quick()` a few seconds.

    `level` is the toy world's problem set (`resofilter_hf.toy.data.make_math_problems`): on ``"basic"`` (two
    one-digit steps) the `basic()` sizes train a tiny model to well over half the clean held-out problems in
    seconds, and a 30%-flawed pool costs it accuracy. The plain defaults are the ``"gsm"`` world (two to five
    GSM8K-like steps), where final-answer accuracy stays near zero (the model needs ~15k samples to start
    solving those problems) and held-out loss is the signal.
    """

    level: str = "gsm"
    n_pool: int = 400
    flaw_rate: float = 0.3
    n_warmup: int = 800
    warmup_flaw_rate: float = 0.0
    n_test: int = 100
    num_layers: int = 4
    hidden_size: int = 128
    intermediate_size: int = 256
    num_heads: int = 4
    num_kv_heads: int = 2
    warmup: ProxySettings = field(default_factory=lambda: ProxySettings(epochs=2, learning_rate=2e-3))
    proxy: ProxySettings = field(default_factory=lambda: ProxySettings(epochs=1, learning_rate=1e-3))
    keep: float = 0.5
    scorers: tuple[str, ...] = ("resonance", "resonance_sgd")
    selections: tuple[str, ...] = ("resonance", "baseline_loss", "baseline_random")
    scoring_batch_size: int = 16

    @classmethod
    def basic(cls) -> StorySettings:
        """The world where accuracy moves (fixed on pilot seed 99 from the clean-pool and flawed-pool arms only):
        800 basic problems, a 500-problem clean warm-up that teaches the format (accuracy ~0 after it), a
        3-layer width-96 Llama, 3 epochs on the pool. One training run on the pool and its evaluation take
        about 15 s on one CPU thread."""
        return cls(
            level="basic",
            n_pool=800,
            flaw_rate=0.3,
            n_warmup=500,
            n_test=200,
            num_layers=3,
            hidden_size=96,
            intermediate_size=192,
            num_heads=4,
            num_kv_heads=2,
            warmup=ProxySettings(epochs=2, batch_size=16, learning_rate=3e-3, max_length=96, max_new_tokens=64),
            proxy=ProxySettings(epochs=3, batch_size=16, learning_rate=3e-3, max_length=96, max_new_tokens=64),
        )

    @classmethod
    def quick(cls) -> StorySettings:
        """A few seconds: the basic world at a size that exercises every step, with numbers that mean nothing."""
        tiny = ProxySettings(max_steps=2, batch_size=4, max_new_tokens=24, eval_batch_size=16)
        return cls(
            level="basic",
            n_pool=24,
            n_warmup=16,
            n_test=8,
            hidden_size=64,
            intermediate_size=128,
            warmup=tiny,
            proxy=tiny,
        )

    def with_progress(self) -> StorySettings:
        """The same sizes with tqdm bars while training."""
        return replace(
            self, warmup=replace(self.warmup, show_progress=True), proxy=replace(self.proxy, show_progress=True)
        )


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
    heldout_loss, accuracy, ...), "makeup" (flawed share of each selection), "table" (the markdown summary),
    "plots", "settings", "timings_s".
    """
    settings = settings or (StorySettings.quick() if quick else StorySettings.basic())
    if progress:  # a line per step, tqdm bars while training
        settings = settings.with_progress()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    out, started, step = Path(output_dir), time.perf_counter(), _Steps(progress)
    work = out / "work"
    warm, pool, test = step("data", make_world, settings, seed)
    base = step("model", build_base, settings, seed, work / "base-model")
    warmed = step("warmup", warm_up, base, warm, settings.warmup, seed, work)
    scored = step("score", score_story_pool, settings, warmed, pool, work, seed)
    write_parquet(scored, out / "scored.parquet", read_provenance(scored))
    retrain = dict(columns=settings.selections, keep=settings.keep, seed=seed, work=work)
    selections = step("retrain", retrain_selections, warmed, scored, test, settings.proxy, **retrain)
    result = _tables_and_plots(scored, selections, settings, out)
    result = {
        "seed": seed,
        "quick": quick,
        "torch_threads": _threads(),
        "settings": asdict(settings),
        "n": {"warmup": len(warm), "pool": len(pool), "test": len(test)},
        "flaw_counts": {f: pool["flaw"].count(f) for f in sorted(set(pool["flaw"]))},
        **result,
        "timings_s": {**step.timings, "total": round(time.perf_counter() - started, 2)},
    }
    write_atomic(out / "story.json", json.dumps(result, indent=2, default=str) + "\n")
    return result


def _tables_and_plots(scored, selections: list[dict], settings: StorySettings, out: Path) -> dict[str, Any]:
    """The story's AUROC and makeup tables, its markdown summary and its three figures (written under `out`)."""
    columns = score_columns(scored)
    aurocs = auroc_table(scored, columns)
    confounds = confound_report({c: scored[c] for c in columns}, scored["resonance_tokens"], scored["resonance_loss"])
    makeup = selection_makeup(scored, settings.selections, settings.keep)
    makeup += [{**row, "column": "full"} for row in selection_makeup(scored, settings.selections[:1], 1.0)]
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
        "plots": plots,
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()
