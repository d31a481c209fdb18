"""Length as a confound on the toy world: AUROC per flaw overall and within length strata, plain vs length-
stratified selection, and length-residualised scores.

Per seed: the story's toy world (a tiny Llama warmed up on clean problems, a 30%-flawed pool), the pool scored by
the paper's score and its SGD variant (+ anatomy), gradient alignment with a clean reference set (raw gradient and
fresh AdamW steps; a row is flagged when its alignment is LOW), and the baselines (loss, IFD, length, random).
Length = the loss tokens each row is scored on. Strata = quartiles of it. Settings fixed before any result.

Usage: python bench/bench_length_strata.py [--seeds 0 1 2] [--smoke]
"""

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from resofilter_hf import select_by_resonance  # noqa: E402
from resofilter_hf.confounds import spearman  # noqa: E402
from resofilter_hf.demo.story import StorySettings, build_base, make_world, score_pool, warm_up  # noqa: E402
from resofilter_hf.sweep import ProxySettings  # noqa: E402
from resofilter_hf.toy import make_math_problems  # noqa: E402

from _common import FLAG_SIGNS as FLAGS  # noqa: E402
from _common import STRATA, auroc_rows, machine, residualised, score_alignment, strata_of, write_result  # noqa: E402


THREADS = 1
SEEDS = (0, 1, 2)
SETTINGS = StorySettings(n_pool=1000, n_warmup=800, scorers=("resonance", "resonance_sgd"))
N_REFERENCE = 64  # clean problems from another stream, none in the pool
SELECTED = ("resonance", "resonance_sgd", "alignment_grad", "baseline_loss", "resonance_resid", "alignment_grad_resid")
SMOKE = replace(
    SETTINGS, n_pool=40, n_warmup=16, hidden_size=64, intermediate_size=128, warmup=ProxySettings(max_steps=2)
)


def selection_rows(scored, columns: dict[str, np.ndarray], flaws: np.ndarray) -> list[dict]:
    """Keep 50% by each selected column, plain and stratified by length: the flawed share of what is kept."""
    rows = []
    table = scored.add_column("row_index", list(range(len(scored))))
    for name in SELECTED:
        table_c = table.add_column("_flag", columns[name].tolist())
        for stratify in (None, "length"):
            kept = select_by_resonance(table_c, keep=0.5, column="_flag", dedup_on=None, stratify_by=stratify)
            kept_flaws = flaws[np.asarray(kept["row_index"])]
            rows.append(
                {
                    "scorer": name,
                    "stratify_by": stratify or "none",
                    "n_kept": len(kept),
                    "flawed_share_kept": float((kept_flaws != "none").mean()),
                    **{f"kept_{f}": int((kept_flaws == f).sum()) for f in sorted(set(flaws))},
                }
            )
    return rows


def run_seed(seed: int, settings: StorySettings, work: Path) -> dict:
    t0 = time.perf_counter()
    warm, pool, test = make_world(settings, seed)
    base = build_base(settings, seed, work / "base-model")
    warmed = warm_up(base, warm, settings.warmup, seed, work)
    scored = score_pool(warmed, pool, work, scorers=settings.scorers, seed=seed, batch_size=16, max_length=256)
    reference = make_math_problems(N_REFERENCE, seed=30_000 + seed, flaw_rate=0.0)
    pool_questions = set(pool["prompt"])
    reference = reference.filter(lambda row: row["prompt"] not in pool_questions)
    aligned = score_alignment(warmed, scored.select_columns(["prompt", "completion"]), reference, work)
    for name, values in aligned.items():
        scored = scored.add_column(name, values.tolist())
    flaws = np.asarray(scored["flaw"])
    length = np.asarray(scored["resonance_tokens"], dtype=np.float64)
    flags = {name: sign * np.asarray(scored[name], dtype=np.float64) for name, sign in FLAGS.items()}
    residual = {f"{name}_resid": residualised(v, length) for name, v in flags.items() if name != "baseline_length"}
    strata = strata_of(length)
    return {
        "seed": seed,
        "n_pool": len(scored),
        "n_reference": len(reference),
        "spearman_with_length": {name: spearman(v, length) for name, v in flags.items()},
        "auroc": auroc_rows({**flags, **residual}, flaws, strata),
        "selection": selection_rows(scored, {**flags, **residual}, flaws),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def summarise(results: list[dict]) -> str:
    lines = ["| scorer | Spearman w/ length | AUROC any | AUROC any within length quartiles |", "|---|---|---|---|"]
    names = [r["scorer"] for r in results[0]["auroc"] if r["flaw"] == "any"]
    for name in names:
        any_rows = [next(r for r in res["auroc"] if r["scorer"] == name and r["flaw"] == "any") for res in results]
        rho = [res["spearman_with_length"].get(name) for res in results]
        rho_text = f"{np.mean(rho):+.2f}" if all(v is not None for v in rho) else "-"
        a = np.array([r["auroc"] for r in any_rows])
        w = np.array([r["auroc_within_length"] for r in any_rows])
        lines.append(f"| {name} | {rho_text} | {a.mean():.3f} +- {a.std():.3f} | {w.mean():.3f} +- {w.std():.3f} |")
    flaws = sorted({r["flaw"] for r in results[0]["auroc"]} - {"any"})
    lines += ["", "| scorer | " + " | ".join(f"{f} (all / within)" for f in flaws) + " |"]
    lines.append("|---|" + "---|" * len(flaws))
    for name in names:
        cells = []
        for f in flaws:
            rows = [next(r for r in res["auroc"] if r["scorer"] == name and r["flaw"] == f) for res in results]
            cells.append(
                f"{np.mean([r['auroc'] for r in rows]):.2f} / {np.nanmean([r['auroc_within_length'] for r in rows]):.2f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| keep 50% by | stratify_by | flawed share kept (mean +- std) |", "|---|---|---|"]
    for row in results[0]["selection"]:
        shares = [
            next(
                s["flawed_share_kept"]
                for s in res["selection"]
                if s["scorer"] == row["scorer"] and s["stratify_by"] == row["stratify_by"]
            )
            for res in results
        ]
        lines.append(f"| {row['scorer']} | {row['stratify_by']} | {np.mean(shares):.3f} +- {np.std(shares):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--smoke", action="store_true", help="toy size, to check the script")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    settings = SMOKE if args.smoke else SETTINGS
    results = []
    with tempfile.TemporaryDirectory(prefix="length-strata-") as tmp:
        for seed in args.seeds:
            results.append(run_seed(seed, settings, Path(tmp) / f"seed{seed}"))
            print(f"seed {seed}: {results[-1]['seconds']} s", flush=True)
    table = summarise(results)
    print(table)
    payload = {
        "machine": machine(THREADS, "cpu"),
        "settings": {"pool": settings.n_pool, "warmup": settings.n_warmup, "reference": N_REFERENCE, "strata": STRATA},
        "smoke": args.smoke,
        "seeds": results,
        "table": table,
    }
    print(f"written to {write_result('length-strata' + ('-smoke' if args.smoke else ''), payload)}")


if __name__ == "__main__":
    main()
