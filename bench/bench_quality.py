"""Quality benchmark: do the scores find flawed rows, and does training on what they keep pay?

Protocol, per seed, on the toy world (synthetic math problems with labelled flaws):

1. a tiny Llama is initialised and warmed up on a separate clean set, so it knows the answer format;
2. a flawed pool is scored on the warmed model by every scorer of the story (`story_steps.SCORERS`: the paper's
   score, its variants sgd / adamw_state / l2 / all_layers, and gradient alignment with a clean reference set of
   `N_REFERENCE` rows disjoint from pool and test, under the paper's transform and as the raw gradient), the
   anatomy columns, and the baselines (loss, perplexity, IFD, length, seeded random);
3. AUROC of every score against the flaw labels, per flaw type, in each score's flagged direction (highest
   flagged; alignment: lowest flagged, `resofilter_hf.columns`);
4. from the warmed model, retrain on keep 25% / 50% / 75% by each of `SELECTIONS` (dropping each score's flagged
   end), on the full pool (keep 100%), and on the clean twin of the pool (the same questions, no flaws: the
   ceiling);
5. held-out loss and greedy final-answer accuracy on clean held-out problems; mean ± std over seeds, and paired
   differences (same seed) against the full pool and against random selection at the same keep share.

Everything runs through the package (resofilter_hf.demo: story steps, tables, plots; resofilter_hf.sweep); nothing is
trained or generated here. The settings below were fixed before any scorer or selection result of this benchmark
was seen: the world is `StorySettings.basic()` as its own pilot fixed it (pilot seed 99, from the clean-pool and
flawed-pool arms only: 800-row pool, 30% flawed, 3 epochs), the reference set has 128 rows, and the scorers and
retrained selections are those listed. Arms run in `SELECTIONS` order per keep share, so a cut-short run has the
core arms first.

Usage: python bench/bench_quality.py [--seeds 0 1 2 3 4] [--work-dir DIR] [--smoke] [--core-only] [--tables-only]
       [--equal-steps]   (every retraining takes the full pool's optimizer steps; outputs named equal_steps_*)
Resumable: each seed's scores and each finished training are kept in the work dir and skipped on a rerun, so two
processes with disjoint --seeds (and --no-tables) can share one work dir; --tables-only then writes the tables from
what is there. --core-only trains the core arms of every seed first; a rerun without it adds the others.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from resofilter_hf.confounds import confound_report  # noqa: E402
from resofilter_hf.demo.plots import plot_histograms, plot_roc, plot_sweep  # noqa: E402
from resofilter_hf.demo.stats import rank_correlation  # noqa: E402
from resofilter_hf.demo.story import (  # noqa: E402
    StorySettings,
    full_pool_steps,
    retraining_proxy,
    score_story_pool,
    story_reference,
)
from resofilter_hf.demo.story_steps import (  # noqa: E402
    build_base,
    clean_pool,
    make_world,
    score_columns,
    warm_up,
)
from resofilter_hf.demo.story_tables import auroc_table, selection_makeup  # noqa: E402
from resofilter_hf.sweep import (  # noqa: E402
    ProxySettings,
    evaluate_proxy,
    keep_ratio_sweep,
    proxy_trainer,
)

from _common import RESULTS, machine, write_result, write_text_atomic  # noqa: E402
from _quality_tables import aggregate, markdown  # noqa: E402


# ---- fixed settings (decided before looking at any scorer or selection result) --------------------------------

THREADS = 1  # tiny models gain nothing from a second thread, and lose a lot when the machine is busy
SEEDS = (0, 1, 2, 3, 4)
SETTINGS = replace(
    StorySettings.basic(),  # the world where accuracy moves: clean pool ~0.85, 30%-flawed pool ~0.54 (5 seeds)
    equal_steps=False,  # the paper's protocol: every selection 3 epochs (--equal-steps: the full pool's steps)
    n_reference=128,  # clean reference rows for alignment (another stream; pool and test questions removed)
    scorers=(
        "resonance",
        "resonance_sgd",
        "resonance_adamw_state",
        "resonance_l2",
        "resonance_all_layers",
        "resonance_alignment",
        "resonance_alignment_grad",
    ),
    selections=(  # retrained at every keep share; the first N_CORE are the core arms (with full and clean)
        "resonance",
        "resonance_alignment",
        "baseline_loss",
        "baseline_random",
        "resonance_sgd",
        "baseline_ifd",
        "baseline_length",
    ),
)
N_CORE = 4  # paper, alignment, loss, random: --core-only trains these (and full, clean) and no others
KEEPS = (0.5, 0.25, 0.75)  # and 1.0: the full pool, once
PLOT_COLUMNS = (  # histograms and ROC curves (first seed)
    "resonance",
    "resonance_sgd",
    "resonance_adamw_state",
    "resonance_l2",
    "resonance_all_layers",
    "resonance_alignment",
    "resonance_alignment_grad",
    "resonance_grad_norm",
    "resonance_toward_zero",
    "resonance_below_eps",
    "baseline_loss",
    "baseline_ifd",
    "baseline_length",
    "baseline_random",
)

SMOKE = replace(  # --smoke: the same pipeline at toy size, to check the script in a minute
    SETTINGS,
    n_pool=40,
    n_warmup=16,
    n_test=4,
    hidden_size=64,
    intermediate_size=128,
    warmup=ProxySettings(max_steps=2, batch_size=8),
    proxy=ProxySettings(max_steps=2, batch_size=8, max_new_tokens=8),
    selections=("resonance", "resonance_alignment", "baseline_random"),
    n_reference=8,
)


# ---- one seed --------------------------------------------------------------------------------------------------


def plan(settings: StorySettings, core_only: bool = False) -> list[tuple[str, float]]:
    """(arm, keep) in the order they are trained: full and clean first, then each keep share by SELECTIONS."""
    selections = settings.selections[:N_CORE] if core_only else settings.selections
    return [("full", 1.0), ("clean", 1.0)] + [(c, k) for k in KEEPS for c in selections]


def prepare_seed(seed: int, settings: StorySettings, work: Path):
    """World, warmed model, scores and the per-seed tables (seed.json); each step skipped when already done."""
    from datasets import Dataset

    work.mkdir(parents=True, exist_ok=True)
    warm, pool, test = make_world(settings, seed)
    clean, reference = clean_pool(settings, seed, pool), story_reference(settings, seed, pool, test)
    warmed, scored_file, info_file = work / "warm-model", work / "scored.parquet", work / "seed.json"
    if info_file.exists():
        return warmed, Dataset.from_parquet(str(scored_file)), clean, test, json.loads(info_file.read_text())
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if not (warmed / "config.json").exists():
        warmed = warm_up(build_base(settings, seed, work / "base-model"), warm, settings.warmup, seed, work)
    timings["warmup"] = round(time.perf_counter() - t0, 1)
    print(f"[seed {seed}] warm-up done ({timings['warmup']:.0f} s)", flush=True)
    t0 = time.perf_counter()
    trainer = proxy_trainer(warmed, test, settings.proxy, seed=seed, output_dir=work / "warm-eval")
    warm_eval = evaluate_proxy(trainer, test, settings.proxy)
    timings["warm_eval"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    scored = score_story_pool(settings, warmed, pool, work, seed, reference=reference)
    scored.to_parquet(str(scored_file))
    timings["score"] = round(time.perf_counter() - t0, 1)
    print(f"[seed {seed}] scoring done ({timings['score']:.0f} s)", flush=True)
    columns = score_columns(scored)
    makeup = [m for k in KEEPS for m in selection_makeup(scored, settings.selections, k)]
    makeup += [{**selection_makeup(scored, ("resonance",), 1.0)[0], "column": "full"}]
    makeup += [{"column": "clean", "keep": 1.0, "n_kept": len(clean), "flawed_share_kept": 0.0}]
    confounds = confound_report({c: scored[c] for c in columns}, scored["resonance_tokens"], scored["resonance_loss"])
    info = {
        "seed": seed,
        "n": {"warmup": len(warm), "pool": len(pool), "test": len(test), "reference": len(reference)},
        "flaw_counts": {f: pool["flaw"].count(f) for f in sorted(set(pool["flaw"]))},
        "warm_model": {k: warm_eval[k] for k in ("heldout_loss", "accuracy", "extracted", "example_generation")},
        "auroc": auroc_table(scored, columns),
        "score_stats": score_stats(scored, columns),
        "rank_correlation_with_paper": {c: rank_correlation(scored["resonance"], scored[c]) for c in columns},
        "confounds": confounds,
        "makeup": makeup,
        "timings_s": timings,
    }
    write_text_atomic(info_file, json.dumps(info, indent=1, default=str))
    return warmed, scored, clean, test, info


def runs_path(work: Path, settings: StorySettings) -> Path:
    """Where a seed's finished trainings are kept: one file per retraining protocol, so a rerun with the other
    protocol in the same work dir retrains instead of reusing (and mislabelling) the first protocol's runs."""
    return work / ("runs_equal_steps.json" if settings.equal_steps else "runs.json")


def run_seed(seed: int, settings: StorySettings, work: Path, core_only: bool = False) -> dict:
    """Everything for one seed; finished trainings are saved in `runs_path` and skipped when rerun. With
    `settings.equal_steps` every retraining takes the full pool's optimizer steps (a kept half seen twice as often)."""
    warmed, scored, clean, test, info = prepare_seed(seed, settings, work)
    proxy = retraining_proxy(settings)  # as the story retrains
    runs_file = runs_path(work, settings)
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    clean = clean.add_column("clean", [0.0] * len(clean))  # a constant score: keep 100% applies the same dedup
    for column, keep in plan(settings, core_only):
        label = f"{column}@{keep}"
        if label in runs:
            continue
        data, select_on = (
            (clean, "clean") if column == "clean" else (scored, "resonance" if column == "full" else column)
        )
        (row,) = keep_ratio_sweep(
            warmed,
            data,
            test,
            keeps=(keep,),
            columns=(select_on,),
            settings=proxy,
            seed=seed,
            output_dir=work / "runs",
        )
        runs[label] = {**row, "column": column}
        write_text_atomic(runs_file, json.dumps(runs, indent=1, default=str))
        print(
            f"[seed {seed}] {label}: n_train {row['n_train']} heldout_loss {row['heldout_loss']:.4f} "
            f"accuracy {row['accuracy']:.3f} ({row['wall_s']:.0f} s)",
            flush=True,
        )
    return load_seed(work, settings)


def load_seed(work: Path, settings: StorySettings) -> dict | None:
    """A seed's tables and its finished trainings under `settings`' protocol (None before its scores exist)."""
    info_file, runs_file = work / "seed.json", runs_path(work, settings)
    if not info_file.exists():
        return None
    runs = list(json.loads(runs_file.read_text()).values()) if runs_file.exists() else []
    return {**json.loads(info_file.read_text()), "runs": runs}


def score_stats(scored, columns) -> list[dict]:
    """Mean, std and coefficient of variation of each score over the scored rows."""
    out = []
    for column in columns:
        values = np.asarray(scored[column], dtype=np.float64)
        values = values[np.isfinite(values)]
        mean, std = float(values.mean()), float(values.std(ddof=1))
        out.append({"scorer": column, "mean": mean, "std": std, "cv": std / abs(mean) if mean else math.nan})
    return out


# ---- across seeds ----------------------------------------------------------------------------------------------


def write_outputs(results: list[dict], settings: StorySettings, args, work: Path, out: Path) -> Path:
    """Tables (markdown), figures and the JSON of the seeds in `results`; seeds asked for but absent are named."""
    from datasets import Dataset

    missing = [s for s in args.seeds if s not in {r["seed"] for r in results}]
    expected = len(plan(settings))
    incomplete = {r["seed"]: expected - len(r["runs"]) for r in results if len(r["runs"]) < expected}
    agg = aggregate(results, settings.selections)
    first = Dataset.from_parquet(str(work / f"seed{results[0]['seed']}" / "scored.parquet"))
    columns = [c for c in PLOT_COLUMNS if c in first.column_names]
    prefix = ("smoke_" if args.smoke else "") + ("equal_steps_" if settings.equal_steps else "")
    full_runs = [r for r in agg["raw_runs"] if r["column"] == "full"]
    curves = [r for r in agg["raw_runs"] if r["column"] in settings.selections]
    curves += [r | {"column": c} for r in full_runs for c in settings.selections]
    clean = next((r for r in agg["runs"] if r["column"] == "clean"), None)
    levels = {"clean pool": {m: clean[f"{m}_mean"] for m in ("accuracy", "heldout_loss")}} if clean else {}
    plots = {
        "histograms": plot_histograms(first, columns, out / f"{prefix}score_histograms.png"),
        "roc": plot_roc(first, columns, out / f"{prefix}roc.png"),
        "accuracy_vs_kept": plot_sweep(
            curves,
            out / f"{prefix}accuracy_vs_kept.png",
            title=f"toy world, {len(results)} seeds (mean ± std); 100% = full pool"
            + (
                "; every run the full pool's steps"
                if settings.equal_steps
                else f"; every run {settings.proxy.epochs:g} epochs"
            ),
            levels=levels,
        ),
    }
    wall = sum(sum(r["timings_s"].values()) + sum(run["wall_s"] for run in r["runs"]) for r in results)
    context = {
        "seeds": [r["seed"] for r in results],
        "missing": missing,
        "incomplete": incomplete,
        "threads": THREADS,
        "wall_s": wall,
        "n": results[0]["n"],
        "settings": settings,
        "protocol": (
            f"every retraining takes {retraining_proxy(settings).max_steps} optimizer steps (the full pool's "
            f"{full_pool_steps(settings)} unless max_steps is set: equal compute)"
            if settings.equal_steps
            else f"every retraining takes {settings.proxy.epochs:g} epochs (a smaller selection takes fewer steps)"
        ),
    }
    table = markdown(agg, context)
    write_text_atomic(out / f"{prefix}quality.md", table)
    payload = {
        "benchmark": "quality",
        "machine": machine(THREADS, "cpu"),
        "settings": {
            "seeds": context["seeds"],
            "missing_seeds": missing,
            "story": asdict(settings),
            "keeps": [*KEEPS, 1.0],
            "selection_rule": "select_by_resonance defaults (dedup prompts, original order); drop = each column's declared direction (resofilter_hf.columns)",
            "auroc_direction": "flagged end of each score: highest; alignment: lowest",
            "smoke": args.smoke,
            "command": " ".join(sys.argv),
        },
        "aggregate": {k: v for k, v in agg.items() if k != "raw_runs"},
        "per_seed": results,
        "plots": {k: str(v) for k, v in plots.items()},
        "wall_s": round(wall, 1),
    }
    if args.smoke:  # a check of the script, kept out of bench/results
        path = out / f"{prefix}quality.json"
        write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")
    else:
        path = write_result("quality/quality" + ("-equal-steps" if settings.equal_steps else ""), payload)
    print(table)
    print(f"written: {path}, {out}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--work-dir", default=None, help="models and partial results (default: a temp folder)")
    parser.add_argument("--out", default=str(RESULTS / "quality"))
    parser.add_argument("--smoke", action="store_true", help="toy sizes, to check the script")
    parser.add_argument("--tables-only", action="store_true", help="write the tables from the work dir, train nothing")
    parser.add_argument("--no-tables", action="store_true", help="run the seeds, write no tables (parallel workers)")
    parser.add_argument("--equal-steps", action="store_true", help="every retraining takes the full pool's steps")
    parser.add_argument("--core-only", action="store_true", help=f"retrain only the first {N_CORE} selections")
    args = parser.parse_args()

    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.set_verbosity_error()
    torch.set_num_threads(THREADS)
    settings = replace(SMOKE if args.smoke else SETTINGS, equal_steps=args.equal_steps)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="resofilter-quality-"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"work dir: {work}", flush=True)
    if args.tables_only:
        results = [r for r in (load_seed(work / f"seed{s}", settings) for s in args.seeds) if r is not None]
        if not results:
            raise SystemExit(f"no seed of {args.seeds} has scores in {work}")
    else:
        results = [run_seed(s, settings, work / f"seed{s}", args.core_only) for s in args.seeds]
    if not args.no_tables:
        write_outputs(results, settings, args, work, out)


if __name__ == "__main__":
    main()
