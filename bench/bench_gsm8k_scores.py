"""Resonance scores on real data (GSM8K train): their distribution, and how stable the kept half is.

For each of three model seeds: a tiny Llama with a tokenizer trained on GSM8K text is initialised, warmed up on
GSM8K train rows outside the scored subset, and scores the subset with every resonance variant and the baselines
(resofilter_hf.demo.story_steps.score_pool, the same code path as the quality benchmark). Reported:

- summary statistics and histograms of each score;
- stability of keep-50% (the paper's rule, select_by_resonance defaults): Jaccard overlap of the kept rows between
  model seeds (same scorer) and between scorers (same seed), and Spearman correlations. Two independent random
  halves overlap by Jaccard ~1/3; that is the chance level.

Usage: python bench/bench_gsm8k_scores.py --gsm8k-dir DIR [--work-dir DIR] [--smoke]
(--gsm8k-dir defaults to $RESOFILTER_GSM8K_DIR: the folder with GSM8K train.jsonl and test.jsonl)
"""

import itertools
import json
import math
import os
import sys
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from resofilter_hf.demo.stats import rank_correlation  # noqa: E402
from resofilter_hf.demo.story_steps import score_columns, score_pool  # noqa: E402
from resofilter_hf.demo.story_tables import format_table  # noqa: E402
from resofilter_hf.evaluation.gsm8k import load_gsm8k  # noqa: E402
from resofilter_hf.selection import select_by_resonance  # noqa: E402
from resofilter_hf.sweep import ProxySettings  # noqa: E402

from _common import GSM8K_PROXY, RESULTS, gsm8k_cli, machine, write_result, write_text_atomic  # noqa: E402
from lab.gsm8k_flaws import warm_gsm8k_model  # noqa: E402


# ---- fixed settings --------------------------------------------------------------------------------------------

THREADS = 1
SETTINGS = {
    "model_seeds": [0, 1, 2],
    "scored_rows": [0, 2000],  # GSM8K train rows scored (a 2k subset: scoring all 7,473 x 5 variants x 3 seeds
    # would take about an hour on 2 cores)
    "warmup_rows": [2000, 7473],  # disjoint from the scored rows
    **GSM8K_PROXY,
    "keep": 0.5,
}
SMOKE = {**SETTINGS, "scored_rows": [0, 40], "warmup_rows": [40, 72], "warmup": {**SETTINGS["warmup"], "max_steps": 2}}
STABILITY = ("resonance", "resonance_sgd", "resonance_adamw_state", "resonance_grad_norm", "resonance_l2",
             "resonance_all_layers", "baseline_loss", "baseline_ifd", "baseline_length", "baseline_random")  # fmt: skip
HIST = ("resonance", "resonance_sgd", "resonance_adamw_state", "resonance_grad_norm", "baseline_loss",
        "baseline_length")  # fmt: skip
ROW = "gsm8k_row"


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else math.nan


def kept_rows(scored, column: str, keep: float) -> set:
    return set(select_by_resonance(scored, keep=keep, column=column)[ROW])


def score_seed(seed: int, settings: dict, train, work: Path):
    """The scored subset for one model seed (cached in the work dir)."""
    from datasets import Dataset

    path = work / f"seed{seed}" / "scored.parquet"
    if path.exists():
        return Dataset.from_parquet(str(path)), json.loads((path.parent / "timings.json").read_text())
    timings = {}
    t0 = time.perf_counter()
    warmed = warm_gsm8k_model(
        train,
        range(*settings["warmup_rows"]),
        seed=seed,
        work=work / f"seed{seed}",
        model=settings["model"],
        vocab_size=settings["vocab_size"],
        warmup=ProxySettings(**settings["warmup"]),
    )
    timings["warmup"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    lo, hi = settings["scored_rows"]
    subset = train.select(range(lo, hi)).add_column(ROW, list(range(lo, hi)))
    scored = score_pool(
        warmed,
        subset.select_columns(["prompt", "completion", ROW]),
        work / f"seed{seed}",
        scorers=settings["scorers"],
        seed=seed,
        batch_size=settings["scoring_batch_size"],
        max_length=settings["max_length"],
    )
    timings["score"] = round(time.perf_counter() - t0, 1)
    scored.to_parquet(str(path))
    write_text_atomic(path.parent / "timings.json", json.dumps(timings))
    return scored, timings


def stats(values: np.ndarray) -> dict:
    values = values[np.isfinite(values)]
    q = np.percentile(values, [5, 25, 50, 75, 95])
    mean, std = float(values.mean()), float(values.std(ddof=1))
    return {
        "n": len(values),
        "mean": mean,
        "std": std,
        "cv": std / abs(mean) if mean else math.nan,
        "min": float(values.min()),
        **{f"p{p}": float(v) for p, v in zip((5, 25, 50, 75, 95), q)},
        "max": float(values.max()),
    }


def plot(scored_by_seed: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    for ax, column in zip(axes.flat, HIST):
        for seed, scored in scored_by_seed.items():
            values = np.asarray(scored[column], dtype=np.float64)
            ax.hist(values[np.isfinite(values)], bins=40, histtype="step", label=f"model seed {seed}")
        ax.set_title(column, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("GSM8K train subset: score distributions per model seed", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


def stability(scored_by_seed: dict, keep: float) -> tuple[list[dict], list[dict]]:
    """Keep-`keep` agreement of each `STABILITY` scorer: across model seeds (Jaccard of the kept rows, Spearman of the
    scores, over seed pairs) and with the paper's score on the same seed (mean over seeds)."""
    seeds = list(scored_by_seed)
    kept = {(c, s): kept_rows(scored_by_seed[s], c, keep) for c in STABILITY for s in seeds}
    across_seeds = []
    for c in STABILITY:
        pairs = list(itertools.combinations(seeds, 2))
        jac = [jaccard(kept[(c, a)], kept[(c, b)]) for a, b in pairs]
        rho = [rank_correlation(scored_by_seed[a][c], scored_by_seed[b][c]) for a, b in pairs]
        across_seeds.append(
            {
                "scorer": c,
                "jaccard_mean": float(np.mean(jac)),
                "jaccard_min": float(np.min(jac)),
                "jaccard_max": float(np.max(jac)),
                "spearman_mean": float(np.mean(rho)),
            }
        )
    across_scorers = []
    for c in STABILITY:
        jac = [jaccard(kept[("resonance", s)], kept[(c, s)]) for s in seeds]
        rho = [rank_correlation(scored_by_seed[s]["resonance"], scored_by_seed[s][c]) for s in seeds]
        across_scorers.append(
            {"scorer": c, "jaccard_vs_paper_mean": float(np.mean(jac)), "spearman_vs_paper_mean": float(np.mean(rho))}
        )
    return across_seeds, across_scorers


def main() -> None:
    args, work, out = gsm8k_cli(__doc__.split("\n")[0], THREADS, RESULTS / "quality", "resofilter-gsm8k-")
    settings = SMOKE if args.smoke else SETTINGS
    train = load_gsm8k("train", path=args.gsm8k_dir)
    scored_by_seed, timings = {}, {}
    for seed in settings["model_seeds"]:
        scored_by_seed[seed], timings[seed] = score_seed(seed, settings, train, work)
        print(f"[seed {seed}] {timings[seed]}", flush=True)
    seeds = list(scored_by_seed)
    first = scored_by_seed[seeds[0]]
    columns = [c for c in score_columns(first) if c != "baseline_perplexity"]
    keep = settings["keep"]

    distribution = [
        {"scorer": c, "seed": s, **stats(np.asarray(scored_by_seed[s][c], dtype=np.float64))}
        for c in columns
        for s in seeds
    ]
    statuses = {
        s: {k: list(d["resonance_status"]).count(k) for k in set(d["resonance_status"])}
        for s, d in scored_by_seed.items()
    }
    across_seeds, across_scorers = stability(scored_by_seed, keep)

    prefix = "smoke_" if args.smoke else ""
    figure = plot(scored_by_seed, out / f"{prefix}gsm8k_scores.png")
    dist_rows = [
        {
            k: r[k] if k in ("scorer", "seed", "n") else f"{r[k]:.5g}"
            for k in ("scorer", "seed", "n", "mean", "std", "cv", "min", "p5", "p50", "p95", "max")
        }
        for r in distribution
    ]
    lines = [
        "# Resonance scores on GSM8K (train subset)",
        "",
        f"Rows {settings['scored_rows'][0]}..{settings['scored_rows'][1] - 1} of GSM8K train, scored by tiny Llamas "
        f"(GSM8K tokenizer, {settings['model']['hidden_size']} hidden, {settings['model']['num_layers']} layers) "
        f"warmed up for {settings['warmup']['max_steps']} steps on rows {settings['warmup_rows'][0]}.."
        f"{settings['warmup_rows'][1] - 1}; model seeds {seeds}. Statuses per seed: {statuses}.",
        "",
        "## Distribution",
        "",
        format_table(dist_rows),
        "",
        f"## Stability of keep {keep:.0%} across model seeds (chance Jaccard ~0.333)",
        "",
        format_table(across_seeds),
        "",
        f"## Agreement with the paper's score (keep {keep:.0%}, same seed; mean over seeds)",
        "",
        format_table(across_scorers),
        "",
    ]
    write_text_atomic(out / f"{prefix}gsm8k_scores.md", "\n".join(lines))
    payload = {
        "benchmark": "gsm8k_scores",
        "machine": machine(THREADS, "cpu"),
        "settings": settings,
        "statuses": statuses,
        "distribution": distribution,
        "stability_across_seeds": across_seeds,
        "agreement_with_paper": across_scorers,
        "timings_s": timings,
        "wall_s": round(sum(sum(t.values()) for t in timings.values()), 1),
        "plot": str(figure),
    }
    if args.smoke:
        path = out / "smoke_gsm8k_scores.json"
        write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")
    else:
        path = write_result("gsm8k-scores", payload, folder=out)  # --out, bench/results/quality by default
    print("\n".join(lines))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
