"""Toy-world benchmark: does a tiny model learn the basic world, and does a 30%-flawed pool cost it accuracy?

Protocol, per seed, with `StorySettings.basic()` (the demo's and the quality benchmark's world):

1. `make_world` twice: the pool at flaw rate 0 (clean arm) and at 0.3 (flawed arm). Row i's question does not
   depend on the flaw settings, so both pools hold the same questions (checked), and the warm-up and test sets are
   the same too (checked);
2. build the base model, warm it up once on the clean warm-up set (its accuracy is reported as "warm-up only");
3. from the warmed model, train on the clean pool and on the flawed pool (the same seed, so the runs are paired)
   and evaluate each on the clean held-out problems: greedy final-answer accuracy and held-out loss;
4. informational, not used to fix the settings: the flawed pool's clean rows only (what a perfect filter keeps),
   which splits the loss into fewer clean rows and harm from the flawed ones.

The settings were fixed on pilot seed 99 (``--pilot``), looking only at the clean-pool and flawed-pool arms; then
seeds 0-4 confirm. Also timed: one scoring pass of the pool with the story's scorers (first seed only).

Usage: python bench/bench_toy_world.py [--seeds 0 1 2 3 4] [--pilot] [--smoke] [--work-dir DIR] [--no-score]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from resofilter_hf.demo.story import StorySettings, score_story_pool, story_reference  # noqa: E402
from resofilter_hf.demo.story_steps import build_base, clean_pool, make_world, warm_up  # noqa: E402
from resofilter_hf.sweep import evaluate_proxy, proxy_trainer, train_and_evaluate  # noqa: E402

from _common import RESULTS, machine, write_result, write_text_atomic  # noqa: E402


THREADS = 1
SEEDS = (0, 1, 2, 3, 4)
PILOT_SEED = 99
ARMS = ("clean", "flawed", "flawed_clean_rows")


def _quiet() -> None:
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run_seed(seed: int, settings: StorySettings, work: Path, score: bool) -> dict:
    warm, pool, test = make_world(settings, seed)
    clean = clean_pool(settings, seed, pool)  # the same questions, correct solutions
    started = time.perf_counter()
    base = build_base(settings, seed, work / "base-model")
    warmed = warm_up(base, warm, settings.warmup, seed, work)
    warm_s = time.perf_counter() - started
    warm_only = evaluate_proxy(
        proxy_trainer(warmed, warm, settings.proxy, seed=seed, output_dir=work / "warm-eval"), test, settings.proxy
    )
    pools = {
        "clean": clean,
        "flawed": pool,
        "flawed_clean_rows": pool.filter(lambda row: row["flaw"] == "none"),
    }
    arms = {}
    for name in ARMS:
        arms[name] = train_and_evaluate(warmed, pools[name], test, settings.proxy, seed=seed, output_dir=work / name)
        arms[name].pop("example_generation", None)
        print(
            f"seed {seed} {name:17s} n={arms[name]['n_train']:4d} acc={arms[name]['accuracy']:.3f} "
            f"loss={arms[name]['heldout_loss']:.4f} ({arms[name]['wall_s']:.1f} s)",
            flush=True,
        )
    result = {
        "seed": seed,
        "warm_s": round(warm_s, 2),
        "warm_only": {k: v for k, v in warm_only.items() if k != "example_generation"},
        "arms": arms,
    }
    if score:
        t0 = time.perf_counter()
        reference = story_reference(settings, seed, pool, test)
        score_story_pool(settings, warmed, pool, work / "score", seed, reference)
        result["score_pool_s"] = round(time.perf_counter() - t0, 2)
        print(f"seed {seed} scoring the pool ({', '.join(settings.scorers)}): {result['score_pool_s']:.1f} s")
    return result


def _mean_std(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def aggregate(results: list[dict]) -> dict:
    acc = {arm: [r["arms"][arm]["accuracy"] for r in results] for arm in ARMS}
    loss = {arm: [r["arms"][arm]["heldout_loss"] for r in results] for arm in ARMS}
    diff = [c - f for c, f in zip(acc["clean"], acc["flawed"])]
    summary = {
        "accuracy": {arm: _mean_std(v) for arm, v in acc.items()},
        "heldout_loss": {arm: _mean_std(v) for arm, v in loss.items()},
        "warm_only_accuracy": _mean_std([r["warm_only"]["accuracy"] for r in results]),
        "clean_minus_flawed": _mean_std(diff),
        "train_eval_wall_s": {arm: _mean_std([r["arms"][arm]["wall_s"] for r in results]) for arm in ARMS},
    }
    d = summary["clean_minus_flawed"]
    summary["paired_t"] = d["mean"] / (d["std"] / len(diff) ** 0.5) if d["std"] > 0 else None
    return summary


def markdown(results: list[dict], summary: dict, settings: StorySettings, label: str, wall_s: float) -> str:
    lines = [
        f"# Toy world ({settings.level}): clean pool vs 30%-flawed pool ({label})",
        "",
        f"Settings: `StorySettings.{'quick' if label == 'smoke' else 'basic'}()`: pool {settings.n_pool} (flaw rate {settings.flaw_rate}), warm-up "
        f"{settings.n_warmup} clean, test {settings.n_test} clean; Llama {settings.num_layers} layers x "
        f"{settings.hidden_size} (MLP {settings.intermediate_size}); pool training {settings.proxy.epochs:g} epochs, "
        f"batch {settings.proxy.batch_size}, lr {settings.proxy.learning_rate:g}, max_length "
        f"{settings.proxy.max_length}. {THREADS} torch thread; wall {wall_s:.0f} s.",
        "",
        "| seed | warm-up only | clean pool | flawed pool | clean - flawed | flawed pool's clean rows only* |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        a = {arm: r["arms"][arm]["accuracy"] for arm in ARMS}
        lines.append(
            f"| {r['seed']} | {r['warm_only']['accuracy']:.3f} | {a['clean']:.3f} | {a['flawed']:.3f} | "
            f"{a['clean'] - a['flawed']:+.3f} | {a['flawed_clean_rows']:.3f} |"
        )
    s = summary["accuracy"]
    d = summary["clean_minus_flawed"]
    lines += [
        f"| mean +- std | {summary['warm_only_accuracy']['mean']:.3f} +- {summary['warm_only_accuracy']['std']:.3f} | "
        f"{s['clean']['mean']:.3f} +- {s['clean']['std']:.3f} | {s['flawed']['mean']:.3f} +- "
        f"{s['flawed']['std']:.3f} | {d['mean']:+.3f} +- {d['std']:.3f} | {s['flawed_clean_rows']['mean']:.3f} +- "
        f"{s['flawed_clean_rows']['std']:.3f} |",
        "",
        "Accuracy: greedy final-answer accuracy on the clean held-out problems. Paired t of clean - flawed: "
        + (f"{summary['paired_t']:.1f}" if summary["paired_t"] is not None else "n/a")
        + f" ({d['n']} seeds).",
        "*Informational (added after the settings were fixed, not used to fix them): the flawed pool with its flawed "
        "rows removed, what a perfect filter keeps.",
        "",
        "Held-out loss (mean +- std): "
        + ", ".join(
            f"{arm} {summary['heldout_loss'][arm]['mean']:.4f} +- {summary['heldout_loss'][arm]['std']:.4f}"
            for arm in ARMS
        ),
        "Wall time of one training run + evaluation (s, mean): "
        + ", ".join(f"{arm} {summary['train_eval_wall_s'][arm]['mean']:.1f}" for arm in ARMS)
        + "; warm-up (incl. model build) "
        + f"{statistics.fmean(r['warm_s'] for r in results):.1f}",
    ]
    scored = [r["score_pool_s"] for r in results if "score_pool_s" in r]
    if scored:
        lines.append(f"Scoring the pool once ({', '.join(settings.scorers)}): {scored[0]:.1f} s.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--pilot", action="store_true", help=f"the sizing pilot: seed {PILOT_SEED} only")
    parser.add_argument("--smoke", action="store_true", help="StorySettings.quick(): checks the script, no numbers")
    parser.add_argument("--no-score", action="store_true", help="skip timing one scoring pass of the pool")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    _quiet()
    settings = StorySettings.quick() if args.smoke else StorySettings.basic()
    seeds = [PILOT_SEED] if args.pilot else args.seeds
    label = "smoke" if args.smoke else ("pilot seed 99" if args.pilot else f"seeds {', '.join(map(str, seeds))}")
    work_root = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-toy-world-"))
    started = time.perf_counter()
    results = [
        run_seed(seed, settings, work_root / f"seed{seed}", score=not args.no_score and k == 0)
        for k, seed in enumerate(seeds)
    ]
    wall_s = time.perf_counter() - started
    summary = aggregate(results)
    table = markdown(results, summary, settings, label, wall_s)
    print(table)
    payload = {
        "benchmark": "toy_world",
        "label": label,
        "machine": machine(THREADS, "cpu"),
        "settings": asdict(settings),
        "seeds": seeds,
        "results": results,
        "summary": summary,
        "wall_s": round(wall_s, 1),
    }
    print("wrote", write_result("toy-world", payload, folder=work_root if args.smoke else RESULTS))
    if not args.smoke:
        name = "toy_world_pilot.md" if args.pilot else "toy_world.md"
        write_text_atomic(RESULTS / name, table)


if __name__ == "__main__":
    main()
