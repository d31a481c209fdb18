"""Which scores flag flawed GSM8K solutions: real text with injected, labelled flaws, AUROC per flaw and scorer.

Per seed: GSM8K train rows 0..1499 become a 30%-flawed pool (lab.gsm8k_flaws.inject_flaws:
wrong_step, wrong_answer, truncated, mismatched, repetition, off_topic, equally many; positions seeded by the seed);
a tiny Llama with a tokenizer trained on GSM8K train text is warmed up on rows 1700.. (disjoint from the pool and
the reference) and scores the pool with the paper's score and its variants, the anatomy columns, loss, IFD,
length and random (resofilter_hf.demo.story_steps.score_pool), and with gradient alignment against 200 clean solutions
(rows 1500..1699; raw gradient and fresh AdamW steps; a row is flagged when its alignment is LOW). Reported:
AUROC per flaw kind and scorer (higher = more likely flawed, so alignment enters negated), mean +- std over seeds;
the mean AUROC within quartiles of length (loss tokens); each score's Spearman with length and with loss
(resofilter_hf.confounds.confound_report). Settings are fixed below, before any result.

With ``--model DIR`` (``--model smollm2``: SmolLM2-135M-Instruct from bench/lab/smollm2.py) that pretrained chat
model scores instead, as is (no warm-up): the rows are conversational (a user turn, an assistant turn, its chat
template), a seed changes only the flawed rows, so the distinct rows of all seeds' pools are scored once
(lab.gsm8k_real); `SMOLLM2` below fixes its sizes (before any result), which drop the SGD, settled-AdamW, L2 and
all-layer variants and the raw-gradient alignment (each a full pass on a CPU). It also reports the length confound
of the paper's score for the same rows as `messages` rows and on the toy demo's data. Results go to
``gsm8k_flaws_<model>.md`` and ``gsm8k-flaws-<model>-*.json``.

Usage: python bench/bench_gsm8k_flaws.py --gsm8k-dir DIR [--model DIR|smollm2] [--work-dir DIR] [--smoke] [--out DIR]
(--gsm8k-dir defaults to $RESOFILTER_GSM8K_DIR: the folder with GSM8K train.jsonl and test.jsonl)
"""

import json
import os
import sys
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))

from resofilter_hf.confounds import confound_report  # noqa: E402
from resofilter_hf.demo.story_steps import score_pool  # noqa: E402
from resofilter_hf.evaluation.gsm8k import load_gsm8k  # noqa: E402
from resofilter_hf.sweep import ProxySettings  # noqa: E402

from _common import (  # noqa: E402
    FLAG_SIGNS,
    GSM8K_PROXY,
    RESULTS,
    auroc_rows,
    gsm8k_cli,
    machine,
    score_alignment,
    strata_of,
    write_result,
    write_text_atomic,
)
from lab.gsm8k_flaws import MAKERS, inject_flaws, warm_gsm8k_model  # noqa: E402
from lab.gsm8k_real import format_confound, score_union, toy_confound, union_of_pools  # noqa: E402
from lab.smollm2 import resolve_model  # noqa: E402


THREADS = 1
SETTINGS = {
    "seeds": [0, 1, 2, 3, 4],  # about 6.5 minutes each on one thread (measured on seed 0: 226 s warm-up)
    "pool_rows": [0, 1500],
    "reference_rows": [1500, 1700],  # clean solutions, disjoint from the pool
    "warmup_rows": [1700, 7473],
    "flaw_rate": 0.3,
    **GSM8K_PROXY,  # the same proxy as bench_gsm8k_scores
}
SMOLLM2 = {  # a fixed pretrained scorer: about 30 minutes on one busy CPU thread (0.5 scored rows/s)
    "seeds": [0, 1, 2, 3],
    "pool_rows": [0, 200],
    "reference_rows": [200, 248],
    "flaw_rate": 0.3,
    "max_length": 512,
    "scoring_batch_size": 8,
    "scorers": ["resonance", "resonance_alignment"],  # one pass: the paper's score, anatomy, alignment (AdamW)
    "baselines": ["loss", "ifd", "length"],  # random: per seed (run_real)
    "toy_seeds": [0, 1, 2],
}
SMOKE_REAL = {**SMOLLM2, "seeds": [0, 1], "pool_rows": [0, 12], "reference_rows": [12, 15], "max_length": 96,
              "toy_seeds": []}  # fmt: skip
SMOKE = {
    **SETTINGS,
    "seeds": [0],
    "pool_rows": [0, 40],
    "reference_rows": [40, 48],
    "warmup_rows": [48, 120],
    "warmup": {**SETTINGS["warmup"], "max_steps": 2},
    "scorers": ["resonance", "resonance_sgd"],
}
FLAGS = {  # score column -> sign that makes "higher = more likely flawed" (alignment: LOW is flagged)
    **dict.fromkeys(
        ("resonance", "resonance_sgd", "resonance_adamw_state", "resonance_l2", "resonance_all_layers"), 1
    ),
    **dict.fromkeys(("resonance_grad_norm", "resonance_toward_zero", "resonance_below_eps"), 1),
    **FLAG_SIGNS,
}
ALIGNMENT_COLUMNS = {"resonance_alignment": "alignment_adamw", "resonance_alignment_grad": "alignment_grad"}
KINDS = [*MAKERS, "any"]


def run_seed(seed: int, settings: dict, train, work: Path) -> dict:
    """One seed's AUROC rows, confound report and timings (cached as JSON in `work`, so a rerun resumes)."""
    done = work / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    timings = {}
    t0 = time.perf_counter()
    pool = inject_flaws(train.select(range(*settings["pool_rows"])), flaw_rate=settings["flaw_rate"], seed=seed)
    warmed = warm_gsm8k_model(
        train,
        range(*settings["warmup_rows"]),
        seed=seed,
        work=work,
        model=settings["model"],
        vocab_size=settings["vocab_size"],
        warmup=ProxySettings(**settings["warmup"]),
    )
    timings["warmup"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    scored = score_pool(
        warmed,
        pool.select_columns(["prompt", "completion", "flaw"]),
        work,
        scorers=settings["scorers"],
        seed=seed,
        batch_size=settings["scoring_batch_size"],
        max_length=settings["max_length"],
    )
    timings["score"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    reference = train.select(range(*settings["reference_rows"])).select_columns(["prompt", "completion"])
    aligned = score_alignment(
        warmed, pool.select_columns(["prompt", "completion"]), reference, work, max_length=settings["max_length"]
    )
    timings["alignment"] = round(time.perf_counter() - t0, 1)
    raw = {name: np.asarray(scored[name], dtype=np.float64) for name in FLAGS if name in scored.column_names}
    raw.update(aligned)
    result = {"seed": seed, **analyse(scored, raw), "timings_s": timings}
    write_text_atomic(done, json.dumps(result, indent=2) + "\n")
    return result


def analyse(scored, raw: dict[str, np.ndarray]) -> dict:
    """One pool's accounting and tables: flaw and status counts, AUROC per flaw and scorer (overall, within length
    quartiles, length-residualised), each score's Spearman with length and loss. `raw`: score columns as stored."""
    flaws = np.asarray(scored["flaw"], dtype=str)
    kinds = sorted(str(k) for k in set(flaws))
    length = np.asarray(scored["resonance_tokens"], dtype=np.float64)
    loss = np.asarray(scored["resonance_loss"], dtype=np.float64)
    flagged = {name: FLAGS[name] * values for name, values in raw.items()}
    statuses = list(scored["resonance_status"])
    return {
        "n_pool": len(scored),
        "flaw_counts": {k: int((flaws == k).sum()) for k in kinds},
        "statuses": {k: statuses.count(k) for k in sorted(set(statuses))},
        "cut_by_max_length": int(np.sum(scored["resonance_truncated"])),
        "mean_length_by_flaw": {k: float(length[flaws == k].mean()) for k in kinds},
        "auroc": auroc_rows(flagged, flaws, strata_of(length), length),
        "confounds": confound_report(raw, length, loss),
    }


def run_real(model_dir: str, settings: dict, train, work: Path) -> tuple[list[dict], dict]:
    """Every seed's results with a fixed pretrained scorer (see the module docstring), and the confound section."""
    t0 = time.perf_counter()
    pools = {
        seed: inject_flaws(train.select(range(*settings["pool_rows"])), flaw_rate=settings["flaw_rate"], seed=seed)
        for seed in settings["seeds"]
    }
    union, index = union_of_pools(pools)
    reference = train.select(range(*settings["reference_rows"]))
    scored = score_union(model_dir, union, reference, work, settings)
    scored = scored.rename_columns({k: v for k, v in ALIGNMENT_COLUMNS.items() if k in scored.column_names})
    scoring_s = round(time.perf_counter() - t0, 1)
    print(f"[union] {len(union)} distinct rows of {len(pools)} pools scored in {scoring_s} s", flush=True)
    results = []
    for seed, pool in pools.items():
        rows = scored.select(index[seed].tolist()).add_column("flaw", pool["flaw"])
        raw = {name: np.asarray(rows[name], dtype=np.float64) for name in FLAGS if name in rows.column_names}
        ok = np.asarray(rows["resonance_status"]) == "ok"
        raw["baseline_random"] = np.where(ok, np.random.default_rng(seed).random(len(rows)), np.nan)
        results.append({"seed": seed, **analyse(rows, raw), "timings_s": {"union_scoring": scoring_s}})
    first = settings["seeds"][0]
    t0 = time.perf_counter()
    confound = {
        "formats": format_confound(model_dir, pools[first], scored.select(index[first].tolist()), work, settings),
        "formats_seed": first,
        "toy": toy_confound(settings["toy_seeds"], work),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return results, {"n_union": len(union), **confound}


def _cell(values: list[float]) -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{np.nanmean(values):.3f} +- {np.nanstd(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def _pick(result: dict, scorer: str, flaw: str) -> dict:
    return next(r for r in result["auroc"] if r["scorer"] == scorer and r["flaw"] == flaw)


def tables(results: list[dict]) -> str:
    """Markdown: AUROC per flaw and scorer; within length quartiles; Spearman with length and loss."""
    scorers = [name for name in FLAGS if any(r["scorer"] == name for r in results[0]["auroc"])]
    kinds = [k for k in KINDS if any(r["flaw"] == k for r in results[0]["auroc"])]
    head = "| scorer | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds)
    overall = [head] + [
        f"| {s} | " + " | ".join(_cell([_pick(r, s, k)["auroc"] for r in results]) for k in kinds) + " |"
        for s in scorers
    ]
    within = [head] + [
        f"| {s} | " + " | ".join(_cell([_pick(r, s, k)["auroc_within_length"] for r in results]) for k in kinds) + " |"
        for s in scorers
    ]
    residual = [head] + [
        f"| {s} | "
        + " | ".join(_cell([_pick(r, s, k)["auroc_length_residualised"] for r in results]) for k in kinds)
        + " |"
        for s in scorers
        if s != "baseline_length"
    ]
    confounds = ["| scorer | Spearman with length | Spearman with loss |", "|---|---|---|"]
    for s in scorers:
        cells = []
        for key in ("length", "loss"):
            rho = [r["confounds"][s][key] for r in results]
            cells.append("-" if any(v is None for v in rho) else _cell(rho))
        confounds.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            "## AUROC per flaw kind (flawed vs clean rows; mean +- std over seeds; 0.5 = chance)",
            "",
            *overall,
            "",
            "## AUROC within length quartiles (mean over the quartiles holding both classes)",
            "",
            *within,
            "",
            "## AUROC of the length-residualised score (minus its least-squares fit on 1, log length, log length^2)",
            "",
            *residual,
            "",
            "## Confounds: Spearman of each score (as stored, before the sign flip) with length and with loss",
            "",
            *confounds,
        ]
    )


def describe_proxy(settings: dict, first: dict) -> str:
    return (
        f"scored by tiny Llamas ({settings['model']['hidden_size']} hidden, {settings['model']['num_layers']} "
        f"layers, a {settings['vocab_size']}-token GSM8K tokenizer) warmed up for "
        f"{settings['warmup']['max_steps']} steps on rows {settings['warmup_rows'][0]}.."
        f"{settings['warmup_rows'][1] - 1}; alignment against the clean rows {settings['reference_rows'][0]}.."
        f"{settings['reference_rows'][1] - 1}. Seeds {settings['seeds']} (each seeds the model and the flaw "
        f"positions)"
    )


def describe_real(model_name: str, settings: dict, extra: dict) -> str:
    return (
        f"scored by {model_name} as is (float32, no warm-up), as conversational prompt/completion rows under its chat "
        f"template; alignment (fresh AdamW steps) against the clean rows {settings['reference_rows'][0]}.."
        f"{settings['reference_rows'][1] - 1}. Seeds {settings['seeds']} (each seeds the flaw positions; the "
        f"{extra['n_union']} distinct rows of all pools scored once)"
    )


def confound_section(model_name: str, extra: dict) -> str:
    """Markdown: the paper's score's Spearman with length by row format, and on the toy demo's data."""
    formats = extra["formats"]
    lines = [
        f"## The length confound of the paper's score (`STRONG_RHO` = {extra['toy']['strong_rho']})",
        "",
        f"{model_name}, the pool of seed {extra['formats_seed']} ({formats['messages']['rows']} rows) scored twice:",
        "",
        "| rows | mean loss tokens | rho with own loss tokens | rho with answer tokens | rho with loss | strong confounds |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in formats.items():
        cells = [f"{entry['mean_loss_tokens']:.0f}"] + [
            "-" if entry[k] is None else f"{entry[k]:+.2f}"
            for k in ("rho_own_loss_tokens", "rho_answer_tokens", "rho_loss")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {', '.join(entry['strong_against']) or '-'} |")
    lines += ["", "The toy demo's pool (`StorySettings.basic()`, its warmed-up tiny model), paper's score:", ""]
    lines += ["| seed | rows | rho with length | rho with loss | strong confounds |", "|---|---|---|---|---|"]
    for entry in extra["toy"]["seeds"]:
        lines.append(
            f"| {entry['seed']} | {entry['rows']} | {entry['length']:+.2f} | {entry['loss']:+.2f} | "
            f"{', '.join(entry['strong_against']) or '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    args, work, out = gsm8k_cli(
        __doc__.split("\n")[0], THREADS, RESULTS, "resofilter-gsm8k-flaws-",
        model_option="a pretrained chat model folder (or 'smollm2') to score with instead of warmed-up tiny Llamas",
    )  # fmt: skip
    model_dir, model_name = resolve_model(args.model) if args.model else (None, None)
    train = load_gsm8k("train", path=args.gsm8k_dir)
    start = time.perf_counter()
    extra = {}
    if model_dir:
        settings = SMOKE_REAL if args.smoke else SMOLLM2
        results, extra = run_real(model_dir, settings, train, work)
    else:
        settings = SMOKE if args.smoke else SETTINGS
        results = []
        for seed in settings["seeds"]:
            (work / f"seed{seed}").mkdir(parents=True, exist_ok=True)
            results.append(run_seed(seed, settings, train, work / f"seed{seed}"))
            print(f"[seed {seed}] {results[-1]['timings_s']}", flush=True)
    first = results[0]
    scorer_text = describe_real(model_name, settings, extra) if model_dir else describe_proxy(settings, first)
    text = "\n".join(
        [
            "# Flagging injected flaws in real GSM8K solutions" + (f": {model_name}" if model_dir else ""),
            "",
            f"GSM8K train rows {settings['pool_rows'][0]}..{settings['pool_rows'][1] - 1}, "
            f"{settings['flaw_rate']:.0%} of them flawed (counts, seed {first['seed']}: {first['flaw_counts']}); "
            f"{scorer_text}. Statuses, seed {first['seed']}: {first['statuses']}; rows cut by max_length "
            f"{settings['max_length']}: {first['cut_by_max_length']}. Mean loss tokens by flaw, seed "
            f"{first['seed']}: " + ", ".join(f"{k} {v:.0f}" for k, v in first["mean_length_by_flaw"].items()) + ".",
            "Higher = more likely flawed: alignment enters negated (LOW alignment is flagged).",
            "",
            tables(results),
            "",
            *([confound_section(model_name, extra), ""] if model_dir else []),
        ]
    )
    tag = f"_{model_name.split('-')[0].lower()}" if model_dir else ""
    prefix = "smoke_" if args.smoke else ""
    markdown = out / f"{prefix}gsm8k_flaws{tag}.md"
    write_text_atomic(markdown, text)
    payload = {
        "benchmark": "gsm8k_flaws",
        "smoke": args.smoke,
        "machine": machine(THREADS, "cpu"),
        "model": model_name or "tiny Llama proxies (GSM8K_PROXY)",
        "model_dir": model_dir,
        "settings": settings,
        "seeds": results,
        **({"length_confound": extra} if model_dir else {}),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    name = "gsm8k-flaws" + tag.replace("_", "-") + ("-smoke" if args.smoke else "")
    path = write_result(name, payload, folder=out)
    print(text)
    print(f"written: {path} and {markdown}")


if __name__ == "__main__":
    main()
