"""The quality benchmark's summaries over seeds and its markdown report (bench/bench_quality.py writes both)."""

import math

from resofilter_hf.columns import drop_side
from resofilter_hf.demo.story_tables import format_table, paired_differences
from resofilter_hf.sweep import summarize


METRICS = ("accuracy", "heldout_loss")
KEEP_ORDER = (0.25, 0.5, 0.75, 1.0)


def aggregate(results: list[dict], selections) -> dict:
    """Means and sample stds over seeds of every per-seed table, and the paired differences of the retrainings."""
    tagged = lambda key: [r | {"seed": res["seed"]} for res in results for r in res[key]]  # noqa: E731
    runs = tagged("runs")
    makeup = {
        (m["column"], m["keep"]): m
        for m in summarize(tagged("makeup"), ("column", "keep"), ("flawed_share_kept", "n_kept"))
    }
    run_summary = summarize(runs, ("column", "keep"), (*METRICS, "extracted", "n_train"))
    for row in run_summary:
        share = makeup.get((row["column"], row["keep"]))
        row["flawed_share_kept_mean"] = share["flawed_share_kept_mean"] if share else math.nan
    confounds = [
        {"scorer": c, "length": v.get("length"), "loss": v.get("loss")}
        for res in results
        for c, v in res["confounds"].items()
    ]
    for row in confounds:  # None (undefined) as NaN, so the mean says so
        row.update({k: math.nan if row[k] is None else row[k] for k in ("length", "loss")})
    return {
        "auroc": summarize(tagged("auroc"), ("scorer", "flaw"), ("auroc",)),
        "runs": run_summary,
        "makeup": list(makeup.values()),
        "paired_vs_full": summarize(
            paired_differences(runs, "full", METRICS, same_keep=False), ("column", "keep"), _deltas()
        ),
        "paired_vs_random": summarize(
            paired_differences(runs, "baseline_random", METRICS, same_keep=True), ("column", "keep"), _deltas()
        ),
        "warm_model": summarize([res["warm_model"] for res in results], (), METRICS)[0],
        "score_cv": summarize(tagged("score_stats"), ("scorer",), ("cv",)),
        "rank_correlation_with_paper": summarize(
            [{"scorer": c, "rho": v} for res in results for c, v in res["rank_correlation_with_paper"].items()],
            ("scorer",),
            ("rho",),
        ),
        "confounds": summarize(confounds, ("scorer",), ("length", "loss")),
        "selections": list(selections),
        "raw_runs": runs,
    }


def _deltas() -> tuple[str, ...]:
    return tuple(f"d_{m}" for m in METRICS)


def pm(row: dict | None, metric: str, digits: int = 3, n_seeds: int | None = None, signed: bool = False) -> str:
    """'mean ± std' of `metric` in a summarize() row ('' when absent), with the run count when short of n_seeds."""
    if row is None:
        return ""
    sign = "+" if signed else ""
    text = f"{row[f'{metric}_mean']:{sign}.{digits}f} ± {row[f'{metric}_std']:.{digits}f}"
    return text + (f" (n={row['n_runs']})" if n_seeds is not None and row["n_runs"] != n_seeds else "")


def _pivot(summary: list[dict], arms, metric: str, n_seeds: int, digits: int, signed: bool = False) -> str:
    """One row per arm, one column per keep share, `metric` as mean ± std."""
    cells = {(r["column"], r["keep"]): r for r in summary}
    rows = []
    for arm in arms:
        row = {"selection": arm, "drops": "" if arm in ("full", "clean") else drop_side(arm)}
        for keep in KEEP_ORDER:
            row[f"keep {keep:.0%}"] = pm(cells.get((arm, keep)), metric, digits, n_seeds, signed)
        if any(v for k, v in row.items() if k.startswith("keep")):
            rows.append(row)
    used = [k for k in (rows[0] if rows else {}) if not k.startswith("keep") or any(r[k] for r in rows)]
    return format_table(rows, used)


def _auroc_tables(agg: dict, n_seeds: int) -> list[str]:
    flaws = list(dict.fromkeys(r["flaw"] for r in agg["auroc"]))
    by_scorer: dict[str, dict] = {}
    for r in agg["auroc"]:
        by_scorer.setdefault(r["scorer"], {"scorer": r["scorer"]})[r["flaw"]] = pm(r, "auroc", 2)
    cv = {r["scorer"]: r for r in agg["score_cv"]}
    rho = {r["scorer"]: r for r in agg["rank_correlation_with_paper"]}
    confounds = {r["scorer"]: r for r in agg["confounds"]}
    keep50 = {r["column"]: r for r in agg["runs"] if r["keep"] == 0.5}
    variants = [
        {
            "scorer": name,
            "flags": drop_side(name),
            "AUROC any flaw": by_scorer[name]["any"],
            "Spearman w/ length": f"{confounds[name]['length_mean']:+.2f}" if name in confounds else "",
            "Spearman w/ loss": f"{confounds[name]['loss_mean']:+.2f}" if name in confounds else "",
            "Spearman vs paper": f"{rho[name]['rho_mean']:+.3f}",
            "score CV": f"{cv[name]['cv_mean']:.2e}",
            "accuracy, keep 50%": pm(keep50.get(name), "accuracy", 3, n_seeds) or "not retrained",
        }
        for name in by_scorer
    ]
    return [
        "## AUROC against the flaw labels",
        "",
        "Each score read in its flagged direction (highest flagged; alignment: lowest flagged). 0.5 = chance, "
        "< 0.5 = the score points the other way.",
        "",
        format_table(list(by_scorer.values()), ["scorer", *flaws]),
        "",
        "## Every scorer: AUROC (any flaw), confounds (Spearman with completion length and with loss), spread",
        "",
        format_table(variants),
        "",
    ]


def _outcome_tables(agg: dict, n_seeds: int) -> list[str]:
    arms = [*agg["selections"], "full", "clean"]
    warm = agg["warm_model"]
    return [
        "## Retrained accuracy (greedy final answer, clean held-out problems), mean ± std over seeds",
        "",
        f"Keep 100% = the full flawed pool (`full`); `clean` = the same questions without flaws, trained the same "
        f"way (the ceiling). The warmed-up model before any pool training: accuracy "
        f"{pm(warm, 'accuracy')}, held-out loss {pm(warm, 'heldout_loss', 4)}.",
        "",
        _pivot(agg["runs"], arms, "accuracy", n_seeds, 3),
        "",
        "## Held-out loss (mean token loss of the clean test solutions)",
        "",
        _pivot(agg["runs"], arms, "heldout_loss", n_seeds, 4),
        "",
        "## Flawed share of the rows each selection keeps",
        "",
        _pivot(agg["makeup"], arms, "flawed_share_kept", n_seeds, 3),
        "",
        "## Paired with the full pool of the same seed: selection minus full (accuracy; > 0 = better than full)",
        "",
        _pivot(agg["paired_vs_full"], [*agg["selections"], "clean"], "d_accuracy", n_seeds, 3, signed=True),
        "",
        "Held-out loss, selection minus full (< 0 = better than full):",
        "",
        _pivot(agg["paired_vs_full"], [*agg["selections"], "clean"], "d_heldout_loss", n_seeds, 4, signed=True),
        "",
        "## Paired with random selection at the same keep share and seed: selection minus random",
        "",
        "Accuracy (> 0 = better than random):",
        "",
        _pivot(agg["paired_vs_random"], agg["selections"], "d_accuracy", n_seeds, 3, signed=True),
        "",
        "Held-out loss (< 0 = better than random):",
        "",
        _pivot(agg["paired_vs_random"], agg["selections"], "d_heldout_loss", n_seeds, 4, signed=True),
        "",
    ]


def markdown(agg: dict, context: dict) -> str:
    """The report: what ran, then AUROC, then the retrained outcomes and their paired differences."""
    seeds, n_seeds, n = context["seeds"], len(context["seeds"]), context["n"]
    notes = []
    if context["missing"]:
        notes.append(f"**Seeds missing** (not run or not finished scoring): {context['missing']}.")
    if context["incomplete"]:
        notes.append(f"**Seeds with unfinished trainings** (seed: trainings missing): {context['incomplete']}.")
    settings = context["settings"]
    header = [
        "# Quality benchmark (toy world)",
        "",
        f"Seeds {seeds}; mean ± sample std over seeds (a cell with fewer runs says n=). Compute time "
        f"{context['wall_s'] / 60:.1f} min summed over seeds (seeds may have run in parallel processes), "
        f"{context['threads']} torch thread(s) each. Pool {n['pool']} rows "
        f"({settings.flaw_rate:.0%} flawed), warm-up {n['warmup']}, test {n['test']}, alignment reference "
        f"{n['reference']} clean rows (disjoint from pool and test). Settings: see the JSON (fixed before any "
        "result was seen). Script: bench/bench_quality.py.",
        "",
        f"Retraining protocol: {context['protocol']}.",
        "",
        *notes,
    ]
    return "\n".join([*header, "", *_auroc_tables(agg, n_seeds), *_outcome_tables(agg, n_seeds)])
