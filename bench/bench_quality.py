"""Quality benchmark: do resonance scores find flawed rows, and does keeping the low-resonance half pay?

Protocol (fixed before any result was seen), per seed, on the toy world (synthetic math problems with labelled flaws):

1. a tiny Llama is initialised and warmed up on a separate clean set, so it knows the answer format;
2. a flawed pool is scored on the warmed model by every resonance variant (the engine's transforms, metrics and
   layer choices) and the baselines (loss, perplexity, IFD, length, seeded random);
3. AUROC of every score against the flaw labels, per flaw type (higher score = flagged as flawed);
4. from the warmed model, retrain on keep-50% by several scores (the paper's rule: highest dropped), on the full
   pool, and at keep 25% / 75% for resonance, loss and random (accuracy against kept share);
5. held-out loss and greedy final-answer accuracy on clean held-out problems.

Everything runs through the package (resofilter_hf.experiments: story steps, sweep, baselines, plots); nothing
is trained or generated here.
The settings below were fixed before any scorer or selection result was seen: a sizing pilot (pilot seed 99,
not a benchmark seed) looked only at the full-pool arm's accuracy, to check it is clearly above zero.

Usage: python bench/bench_quality.py [--seeds 0 1 2] [--work-dir DIR] [--smoke]
Resumable: finished seeds and finished trainings are kept in the work dir and skipped on a rerun.
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
from resofilter_hf.experiments.plots import plot_histograms, plot_roc, plot_sweep  # noqa: E402
from resofilter_hf.experiments.stats import rank_correlation  # noqa: E402
from resofilter_hf.experiments.story import StorySettings, score_story_pool  # noqa: E402
from resofilter_hf.experiments.story_steps import build_base, make_world, score_columns, warm_up  # noqa: E402
from resofilter_hf.experiments.story_tables import auroc_table, format_table, selection_makeup  # noqa: E402
from resofilter_hf.experiments.sweep import ProxySettings, evaluate_proxy, keep_ratio_sweep, proxy_trainer, summarize  # noqa: E402

from _common import RESULTS, machine, write_result  # noqa: E402


# ---- fixed settings (decided before looking at any scorer or selection result) --------------------------------

THREADS = 1  # tiny models gain nothing from a second thread, and lose a lot when the machine is busy
SEEDS = (0, 1, 2)
SETTINGS = StorySettings(
    n_pool=2000,  # 30% flawed: 100 rows of each of the 6 defects
    flaw_rate=0.3,
    n_warmup=2000,  # clean problems from another stream; any question also in the pool is dropped
    warmup_flaw_rate=0.0,
    n_test=200,  # clean held-out problems, none in the pool or the warm-up set
    num_layers=4,
    hidden_size=128,
    intermediate_size=256,
    num_heads=4,
    num_kv_heads=2,
    warmup=ProxySettings(epochs=8, batch_size=16, learning_rate=2e-3, max_length=256),
    proxy=ProxySettings(epochs=1, batch_size=16, learning_rate=1e-3, max_length=256, max_new_tokens=160),
    keep=0.5,
    scorers=("resonance", "resonance_sgd", "resonance_adamw_state", "resonance_l2", "resonance_all_layers"),
    selections=(
        "resonance",
        "resonance_sgd",
        "resonance_adamw_state",
        "resonance_grad_norm",
        "baseline_loss",
        "baseline_ifd",
        "baseline_random",
    ),
    scoring_batch_size=16,
)
SWEEP_COLUMNS = ("resonance", "baseline_loss", "baseline_random")
SWEEP_KEEPS = (0.25, 0.75)  # 0.5 and 1.0 come from the selection runs
PLOT_COLUMNS = (  # histograms and ROC curves (seed 0)
    "resonance",
    "resonance_sgd",
    "resonance_adamw_state",
    "resonance_l2",
    "resonance_all_layers",
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
    n_pool=60,
    n_warmup=32,
    n_test=8,
    hidden_size=64,
    intermediate_size=128,
    warmup=ProxySettings(max_steps=2, batch_size=8),
    proxy=ProxySettings(max_steps=2, batch_size=8, max_new_tokens=16),
)


# ---- one seed --------------------------------------------------------------------------------------------------


def run_seed(seed: int, settings: StorySettings, work: Path) -> dict:
    """Everything for one seed; finished trainings are saved in work/runs.json and skipped when rerun."""
    done_file = work / "result.json"
    if done_file.exists():
        return json.loads(done_file.read_text())
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    warm, pool, test = make_world(settings, seed)
    warmed = work / "warm-model"
    if not (warmed / "config.json").exists():
        base = build_base(settings, seed, work / "base-model")
        warmed = warm_up(base, warm, settings.warmup, seed, work)
    timings["warmup"] = round(time.perf_counter() - t0, 1)
    print(f"[seed {seed}] warm-up done ({timings['warmup']:.0f} s)", flush=True)

    t0 = time.perf_counter()
    warm_eval = evaluate_proxy(
        proxy_trainer(warmed, test, settings.proxy, seed=seed, output_dir=work / "warm-eval"), test, settings.proxy
    )
    timings["warm_eval"] = round(time.perf_counter() - t0, 1)

    scored_file = work / "scored.parquet"
    t0 = time.perf_counter()
    if scored_file.exists():
        from datasets import Dataset

        scored = Dataset.from_parquet(str(scored_file))
    else:
        scored = score_story_pool(settings, warmed, pool, work, seed)
        scored.to_parquet(str(scored_file))
    timings["score"] = round(time.perf_counter() - t0, 1)
    print(f"[seed {seed}] scoring done ({timings['score']:.0f} s)", flush=True)
    columns = score_columns(scored)
    aurocs = auroc_table(scored, columns)
    distribution = score_stats(scored, columns)
    makeup = selection_makeup(scored, settings.selections, settings.keep)
    makeup += selection_makeup(scored, SWEEP_COLUMNS, 0.25) + selection_makeup(scored, SWEEP_COLUMNS, 0.75)
    makeup += [{**row, "column": "full"} for row in selection_makeup(scored, ("resonance",), 1.0)]

    runs_file = work / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    plan = [(c, settings.keep) for c in settings.selections] + [("full", 1.0)]
    plan += [(c, k) for c in SWEEP_COLUMNS for k in SWEEP_KEEPS]
    t0 = time.perf_counter()
    for column, keep in plan:
        label = f"{column}@{keep}"
        if label in runs:
            continue
        select_on = "resonance" if column == "full" else column
        (row,) = keep_ratio_sweep(
            warmed,
            scored,
            test,
            keeps=(keep,),
            columns=(select_on,),
            settings=settings.proxy,
            seed=seed,
            output_dir=work / "runs",
        )
        runs[label] = {**row, "column": column}
        runs_file.write_text(json.dumps(runs, indent=1))
        print(
            f"[seed {seed}] {label}: n_train {row['n_train']} heldout_loss {row['heldout_loss']:.4f} "
            f"accuracy {row['accuracy']:.3f} ({row['wall_s']:.0f} s)",
            flush=True,
        )
    timings["retrain"] = round(time.perf_counter() - t0, 1)
    timings["total"] = round(sum(timings.values()), 1)
    result = {
        "seed": seed,
        "n": {"warmup": len(warm), "pool": len(pool), "test": len(test)},
        "flaw_counts": {f: pool["flaw"].count(f) for f in sorted(set(pool["flaw"]))},
        "warm_model": {k: warm_eval[k] for k in ("heldout_loss", "accuracy", "extracted", "example_generation")},
        "auroc": aurocs,
        "score_stats": distribution,
        "rank_correlation_with_paper": {c: rank_correlation(scored["resonance"], scored[c]) for c in columns},
        "makeup": makeup,
        "runs": list(runs.values()),
        "timings_s": timings,
    }
    done_file.write_text(json.dumps(result, indent=1, default=str))
    return result


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


def pm(mean: float, std: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def aggregate(results: list[dict], settings: StorySettings) -> dict:
    aurocs = [r | {"seed": res["seed"]} for res in results for r in res["auroc"]]
    auroc_summary = summarize(aurocs, ("scorer", "flaw"), ("auroc",))
    runs = [r | {"seed": res["seed"]} for res in results for r in res["runs"]]
    makeup = [m | {"seed": res["seed"]} for res in results for m in res["makeup"]]
    run_summary = summarize(runs, ("column", "keep"), ("heldout_loss", "accuracy", "extracted", "n_train"))
    makeup_summary = {
        (m["column"], m["keep"]): m["flawed_share_kept_mean"]
        for m in summarize(makeup, ("column", "keep"), ("flawed_share_kept",))
    }
    for row in run_summary:
        row["flawed_share_kept_mean"] = makeup_summary.get((row["column"], row["keep"]), math.nan)
    full = {r["seed"]: r for r in runs if r["column"] == "full"}
    paired = [
        {
            "column": r["column"],
            "keep": r["keep"],
            "d_heldout_loss": r["heldout_loss"] - full[r["seed"]]["heldout_loss"],
            "d_accuracy": r["accuracy"] - full[r["seed"]]["accuracy"],
        }
        for r in runs
        if r["column"] != "full"
    ]
    paired_summary = summarize(paired, ("column", "keep"), ("d_heldout_loss", "d_accuracy"))
    warm = summarize([res["warm_model"] for res in results], (), ("heldout_loss", "accuracy"))[0]
    stats = summarize([s | {"seed": res["seed"]} for res in results for s in res["score_stats"]], ("scorer",), ("cv",))
    corr = summarize(
        [{"scorer": c, "rho": v} for res in results for c, v in res["rank_correlation_with_paper"].items()],
        ("scorer",),
        ("rho",),
    )
    return {
        "auroc": auroc_summary,
        "runs": run_summary,
        "paired_vs_full": paired_summary,
        "warm_model": warm,
        "score_cv": stats,
        "rank_correlation_with_paper": corr,
        "raw_runs": runs,
    }


def markdown(agg: dict, settings: StorySettings, seeds, wall_s: float) -> str:
    flaws = list(dict.fromkeys(r["flaw"] for r in agg["auroc"]))
    auroc_rows = {}
    for r in agg["auroc"]:
        auroc_rows.setdefault(r["scorer"], {"scorer": r["scorer"]})[r["flaw"]] = pm(r["auroc_mean"], r["auroc_std"], 2)
    cv = {r["scorer"]: r for r in agg["score_cv"]}
    rho = {r["scorer"]: r for r in agg["rank_correlation_with_paper"]}
    sel = {(r["column"], r["keep"]): r for r in agg["runs"]}
    variants = [
        {
            "scorer": name,
            "AUROC any flaw": auroc_rows[name]["any"],
            "score CV (std/mean)": f"{cv[name]['cv_mean']:.2e}",
            "Spearman vs paper": f"{rho[name]['rho_mean']:.3f}",
            "accuracy, keep 50%": pm(
                sel[(name, settings.keep)]["accuracy_mean"], sel[(name, settings.keep)]["accuracy_std"]
            )
            if (name, settings.keep) in sel
            else "not retrained",
        }
        for name in auroc_rows
    ]
    outcome = [
        {
            "selection": r["column"],
            "keep": r["keep"],
            "n_train": int(r["n_train_mean"]),
            "flawed share kept": f"{r['flawed_share_kept_mean']:.3f}",
            "held-out loss": pm(r["heldout_loss_mean"], r["heldout_loss_std"], 4),
            "accuracy": pm(r["accuracy_mean"], r["accuracy_std"]),
            "answer extracted": f"{r['extracted_mean']:.3f}",
        }
        for r in sorted(agg["runs"], key=lambda r: (r["keep"], r["column"]))
    ]
    warm = agg["warm_model"]
    outcome.append(
        {
            "selection": "(warm-up model, no pool training)",
            "keep": "",
            "n_train": 0,
            "flawed share kept": "",
            "held-out loss": pm(warm["heldout_loss_mean"], warm["heldout_loss_std"], 4),
            "accuracy": pm(warm["accuracy_mean"], warm["accuracy_std"]),
            "answer extracted": "",
        }
    )
    paired = [
        {
            "selection": r["column"],
            "keep": r["keep"],
            "Δ held-out loss vs full": pm(r["d_heldout_loss_mean"], r["d_heldout_loss_std"], 4),
            "Δ accuracy vs full": pm(r["d_accuracy_mean"], r["d_accuracy_std"]),
        }
        for r in sorted(agg["paired_vs_full"], key=lambda r: (r["keep"], r["column"]))
    ]
    return "\n".join(
        [
            "# Quality benchmark (toy world)",
            "",
            f"Seeds {list(seeds)}; mean ± sample std over seeds. Wall time {wall_s / 60:.1f} min, "
            f"{THREADS} torch thread(s). Settings: see the JSON (fixed before any result was seen).",
            "",
            "## AUROC against the flaw labels (higher score = flagged as flawed; 0.5 = chance, <0.5 = reversed)",
            "",
            format_table(list(auroc_rows.values()), ["scorer", *flaws]),
            "",
            "## Transforms, metrics, layers",
            "",
            format_table(variants),
            "",
            "## Retraining from the warmed model (greedy final-answer accuracy, clean held-out problems)",
            "",
            format_table(outcome),
            "",
            "## The same runs, paired with the full-pool run of the same seed (selection minus full)",
            "",
            format_table(paired),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--work-dir", default=None, help="models and partial results (default: a temp folder)")
    parser.add_argument("--out", default=str(RESULTS / "quality"))
    parser.add_argument("--smoke", action="store_true", help="toy sizes, to check the script")
    args = parser.parse_args()

    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.set_verbosity_error()
    torch.set_num_threads(THREADS)
    settings = SMOKE if args.smoke else SETTINGS
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="resofilter-quality-"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"work dir: {work}", flush=True)

    results = [run_seed(seed, settings, work / f"seed{seed}") for seed in args.seeds]
    wall = sum(r["timings_s"]["total"] for r in results)  # compute time, also when resumed
    agg = aggregate(results, settings)

    from datasets import Dataset

    first = Dataset.from_parquet(str(work / f"seed{args.seeds[0]}" / "scored.parquet"))
    columns = [c for c in PLOT_COLUMNS if c in first.column_names]
    prefix = "smoke_" if args.smoke else ""
    plots = {
        "histograms": plot_histograms(first, columns, out / f"{prefix}score_histograms.png"),
        "roc": plot_roc(first, columns, out / f"{prefix}roc.png"),
        "accuracy_vs_kept": plot_sweep(
            [r for r in agg["raw_runs"] if r["column"] in SWEEP_COLUMNS]
            + [r | {"column": c} for r in agg["raw_runs"] if r["column"] == "full" for c in SWEEP_COLUMNS],
            out / f"{prefix}accuracy_vs_kept.png",
            title=f"toy world, {len(args.seeds)} seeds (mean ± std); 100% = full pool",
        ),
    }
    table = markdown(agg, settings, args.seeds, wall)
    (out / f"{prefix}quality.md").write_text(table)
    payload = {
        "benchmark": "quality",
        "machine": machine(THREADS, "cpu"),
        "settings": {
            "seeds": list(args.seeds),
            "story": asdict(settings),
            "sweep_columns": list(SWEEP_COLUMNS),
            "sweep_keeps": list(SWEEP_KEEPS),
            "selection_rule": "select_by_resonance defaults: dedup prompts, drop the highest scores, original order",
            "auroc_direction": "higher score = flagged as flawed",
            "smoke": args.smoke,
        },
        "aggregate": {k: v for k, v in agg.items() if k != "raw_runs"},
        "per_seed": results,
        "plots": {k: str(v) for k, v in plots.items()},
        "wall_s": round(wall, 1),
    }
    if args.smoke:  # a check of the script, kept out of bench/results
        path = out / "smoke_quality.json"
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        (RESULTS / "quality").mkdir(parents=True, exist_ok=True)
        path = write_result("quality/quality", payload)
    print(table)
    print(f"written: {path}, {out}")


if __name__ == "__main__":
    main()
