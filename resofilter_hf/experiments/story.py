"""The quality story at small scale: do resonance scores find flawed rows, and does dropping them pay?

On the toy world (synthetic math problems with labelled flaws), one seed:

1. build a tiny model and warm it up on a separate clean set, so it knows the answer format;
2. score a flawed pool with the resonance variants and the baselines (`SCORERS`, `baselines.BASELINES`);
3. AUROC of every score against the flaw labels, per flaw type (higher score = flagged as flawed);
4. retrain from the warmed model on keep-50% by resonance, by loss, at random, and on the full pool;
5. held-out loss and greedy final-answer accuracy on clean test problems; a table and plots.

`run_story` is what `resofilter demo` calls; the benchmark (bench/bench_quality.py) runs the same steps over
seeds and more selections. Every function here is one step, so both share one code path.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ..provenance import read_provenance, write_parquet
from ..selection import select_by_resonance
from .baselines import BASELINES, add_baseline_columns, auroc, roc_curve
from .sweep import INPUT_COLUMNS, ProxySettings, keep_ratio_sweep, plot_sweep, save_proxy, train_proxy


# Score column -> ResonanceConfig overrides. The first is the paper's score; it also writes the anatomy columns
# (resonance_grad_norm, resonance_toward_zero, resonance_below_eps) and the loss the free baselines come from.
SCORERS: dict[str, dict[str, Any]] = {
    "resonance": {},
    "resonance_sgd": {"resonance_optimizer": "sgd"},
    "resonance_adamw_state": {"resonance_optimizer": "adamw_state"},
    "resonance_l2": {"resonance_metric": "l2"},
    "resonance_all_layers": {"resonance_last_n_layers": None},
}
STEP_TITLES = {
    "data": "generating the toy world: a warm-up set, a flawed pool, clean test problems",
    "model": "building the tiny base model",
    "warmup": "warming the model up on the clean set (so it knows the answer format)",
    "score": "scoring the pool: resonance variants and baselines",
    "retrain": "retraining on keep-50% selections and on the full pool; evaluating on the test problems",
}
ANATOMY = ("resonance_grad_norm", "resonance_toward_zero", "resonance_below_eps")
BASELINE_COLUMNS = ("baseline_loss", "baseline_perplexity", "baseline_ifd", "baseline_length", "baseline_random")


@dataclass(frozen=True)
class StorySettings:
    """Sizes of one story run. The defaults take about two minutes on one CPU thread; `quick()` a few seconds.

    At these sizes final-answer accuracy stays near zero (the model needs ~15k samples to start solving the toy
    problems); held-out loss is the signal. bench/bench_quality.py runs the same steps at a size where it is not.
    """

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
    def quick(cls) -> StorySettings:
        tiny = ProxySettings(max_steps=2, batch_size=4, max_new_tokens=24, eval_batch_size=16)
        return cls(n_pool=24, n_warmup=16, n_test=8, hidden_size=64, intermediate_size=128, warmup=tiny, proxy=tiny)


# ---- steps -----------------------------------------------------------------------------------------------------


def make_world(settings: StorySettings, seed: int) -> tuple[Dataset, Dataset, Dataset]:
    """(warm-up set, flawed pool, clean test set): three disjoint sets of toy problems (text prompt/completion)."""
    from ..toy.data import make_math_problems, make_test_problems

    pool = make_math_problems(settings.n_pool, seed=seed, flaw_rate=settings.flaw_rate)
    # the warm-up draws from the training stream of another seed; a question that is also in the pool is dropped
    warm = make_math_problems(settings.n_warmup, seed=10_000 + seed, flaw_rate=settings.warmup_flaw_rate)
    pool_questions = set(pool["prompt"])
    warm = warm.filter(lambda row: row["prompt"] not in pool_questions)
    test = make_test_problems(settings.n_test, seed=seed, exclude=[*pool["prompt"], *warm["prompt"]])
    return warm, pool, test


def build_base(settings: StorySettings, seed: int, folder: str | Path) -> Path:
    """A randomly initialised tiny Llama (toy tokenizer) of the configured size."""
    from ..toy.model import build_tiny_model

    return build_tiny_model(
        folder,
        seed=seed,
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


def score_pool(
    model_dir: str | Path,
    pool: Dataset,
    work: str | Path,
    *,
    scorers: Sequence[str] = tuple(SCORERS),
    baselines: Sequence[str] = BASELINES,
    seed: int = 0,
    batch_size: int = 16,
    max_length: int = 256,
) -> Dataset:
    """`pool` with one column per resonance variant (`SCORERS`), the anatomy columns, and the baseline columns.

    Every variant scores the same model state; "resonance" (the paper's score) always runs, with
    `resonance_anatomy`, and its trainer computes the baselines.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..config import ResonanceConfig
    from ..trainer import ResonanceTrainer

    unknown = [s for s in scorers if s not in SCORERS]
    if unknown:
        raise ValueError(f"score_pool: unknown scorer(s) {unknown}; choose from {list(SCORERS)}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    inputs = pool.select_columns([c for c in INPUT_COLUMNS if c in pool.column_names])
    scored, paper_trainer = None, None
    for name in ["resonance", *(s for s in scorers if s != "resonance")]:
        args = ResonanceConfig(
            output_dir=str(Path(work) / f"score-{name}"),
            report_to="none",
            use_cpu=True,
            bf16=False,
            disable_tqdm=True,
            max_length=max_length,
            resonance_resume=False,
            resonance_batch_size=batch_size,
            resonance_column=name,
            resonance_anatomy=name == "resonance",
            **SCORERS[name],
        )
        trainer = ResonanceTrainer(model=model, args=args, train_dataset=inputs, processing_class=tokenizer)
        result = trainer.score()
        if scored is None:
            scored, paper_trainer = result, trainer
        else:
            scored = scored.add_column(name, result[name])
    scored = add_baseline_columns(paper_trainer, scored, which=baselines, seed=seed)
    extra = [c for c in pool.column_names if c not in scored.column_names]
    for name in extra:  # labels and other columns of the pool ride along, in input order
        scored = scored.add_column(name, pool[name])
    return scored


def score_columns(scored: Dataset) -> list[str]:
    """The score columns present, in a fixed order: resonance variants, anatomy, baselines."""
    order = [*SCORERS, *ANATOMY, *BASELINE_COLUMNS]
    return [c for c in order if c in scored.column_names]


def auroc_table(scored: Dataset, columns: Sequence[str], flaw_column: str = "flaw") -> list[dict[str, Any]]:
    """AUROC of each score column flagging each flaw type against the clean rows, plus "any" (all flawed rows).

    Higher score = more likely flawed: 1 finds every flawed row first, 0.5 is chance, below 0.5 ranks flawed rows
    as *less* suspicious than clean ones (the score points the other way).
    """
    flaws = np.asarray(scored[flaw_column])
    clean = flaws == "none"
    kinds = [f for f in dict.fromkeys(flaws.tolist()) if f != "none"]
    kinds = sorted(kinds) + ["any"]
    rows = []
    for column in columns:
        values = np.asarray(scored[column], dtype=np.float64)
        for kind in kinds:
            flawed = ~clean if kind == "any" else flaws == kind
            subset = flawed | clean
            rows.append(
                {
                    "scorer": column,
                    "flaw": kind,
                    "auroc": auroc(values[subset], flawed[subset]),
                    "n_flawed": int(flawed.sum()),
                    "n_clean": int(clean.sum()),
                }
            )
    return rows


def selection_makeup(scored: Dataset, columns: Sequence[str], keep: float, flaw_column: str = "flaw") -> list[dict]:
    """For keep-`keep` by each column: rows kept and the share of kept rows that carry a flaw."""
    rows = []
    for column in columns:
        kept = select_by_resonance(scored, keep=keep, column=column)
        flaws = np.asarray(kept[flaw_column])
        rows.append(
            {
                "column": column,
                "keep": keep,
                "n_kept": len(kept),
                "flawed_share_kept": float((flaws != "none").mean()) if len(flaws) else math.nan,
            }
        )
    return rows


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
    """Keep-`keep` by each column (the paper's rule: highest dropped) and the full pool, each retrained from
    `model_dir` and evaluated on `test`. The full pool appears once, as column "full"."""
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


# ---- tables and plots ------------------------------------------------------------------------------------------


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """A markdown table of `rows` (dicts); floats rounded to `digits` decimals, NaN as "nan"."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def cell(value) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def pivot(rows: Sequence[Mapping[str, Any]], index: str, columns: str, value: str) -> list[dict[str, Any]]:
    """Long rows to a wide table: one row per `index` value, one column per `columns` value."""
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        out.setdefault(row[index], {index: row[index]})[str(row[columns])] = row[value]
    return list(out.values())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_histograms(scored: Dataset, columns: Sequence[str], path: str | Path, flaw_column: str = "flaw") -> Path:
    """One panel per score column: the score's distribution for clean rows and for each flaw type."""
    plt = _pyplot()
    flaws = np.asarray(scored[flaw_column])
    kinds = ["none", *sorted(set(flaws.tolist()) - {"none"})]
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.6 * nrows), squeeze=False)
    for ax, column in zip(axes.flat, columns):
        values = np.asarray(scored[column], dtype=np.float64)
        finite = np.isfinite(values)
        edges = np.histogram_bin_edges(values[finite], bins=30) if finite.any() else 10
        for kind in kinds:
            chosen = values[finite & (flaws == kind)]
            if len(chosen):
                ax.hist(
                    chosen,
                    bins=edges,
                    histtype="step",
                    density=True,
                    label=kind,
                    linewidth=1.6 if kind == "none" else 1,
                )
        ax.set_title(column, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useOffset=True)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path, plt)


def plot_roc(scored: Dataset, columns: Sequence[str], path: str | Path, flaw_column: str = "flaw") -> Path:
    """ROC curves (score flags flawed rows) of each column: one panel for any flaw, one per flaw type."""
    plt = _pyplot()
    flaws = np.asarray(scored[flaw_column])
    clean = flaws == "none"
    kinds = ["any", *sorted(set(flaws.tolist()) - {"none"})]
    ncols = min(4, len(kinds))
    nrows = math.ceil(len(kinds) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3 * nrows), squeeze=False)
    for ax, kind in zip(axes.flat, kinds):
        flawed = ~clean if kind == "any" else flaws == kind
        subset = flawed | clean
        for k, column in enumerate(columns):
            values = np.asarray(scored[column], dtype=np.float64)[subset]
            fpr, tpr = roc_curve(values, flawed[subset])
            label = f"{column} ({auroc(values, flawed[subset]):.2f})"
            ax.plot(fpr, tpr, label=label, linewidth=1, color=plt.get_cmap("tab20")(k % 20))
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(kind, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(kinds) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=5.5, loc="lower right")
    fig.tight_layout()
    return _save(fig, path, plt)


def _save(fig, path, plt) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# ---- the story -------------------------------------------------------------------------------------------------


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
    settings = settings or (StorySettings.quick() if quick else StorySettings())
    if progress:  # a line per step, tqdm bars while training
        settings = replace(
            settings,
            warmup=replace(settings.warmup, show_progress=True),
            proxy=replace(settings.proxy, show_progress=True),
        )
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    out = Path(output_dir)
    work = out / "work"
    timings: dict[str, float] = {}
    started = time.perf_counter()

    steps = ("data", "model", "warmup", "score", "retrain")

    def step(name, fn, *args, **kwargs):
        if progress:
            print(f"[{steps.index(name) + 1}/{len(steps)}] {STEP_TITLES[name]}", flush=True)
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - t0, 2)
        return value

    warm, pool, test = step("data", make_world, settings, seed)
    base = step("model", build_base, settings, seed, work / "base-model")
    warmed = step("warmup", warm_up, base, warm, settings.warmup, seed, work)
    scored = step(
        "score",
        score_pool,
        warmed,
        pool,
        work,
        scorers=settings.scorers,
        seed=seed,
        batch_size=settings.scoring_batch_size,
        max_length=settings.proxy.max_length,
    )
    write_parquet(scored, out / "scored.parquet", read_provenance(scored))
    columns = score_columns(scored)
    aurocs = auroc_table(scored, columns)
    makeup = selection_makeup(scored, settings.selections, settings.keep)
    makeup += [{**row, "column": "full"} for row in selection_makeup(scored, settings.selections[:1], 1.0)]
    selections = step(
        "retrain",
        retrain_selections,
        warmed,
        scored,
        test,
        settings.proxy,
        columns=settings.selections,
        keep=settings.keep,
        seed=seed,
        work=work,
    )
    plots = {
        "histograms": str(plot_histograms(scored, columns, out / "score_histograms.png")),
        "roc": str(plot_roc(scored, [c for c in columns if c != "baseline_perplexity"], out / "roc.png")),
        "selections": str(plot_sweep(selections, out / "selections.png", title=f"keep {settings.keep:.0%} vs full")),
    }
    table = story_table(aurocs, selections, makeup)
    timings["total"] = round(time.perf_counter() - started, 2)
    result = {
        "seed": seed,
        "quick": quick,
        "torch_threads": _threads(),
        "settings": asdict(settings),
        "n": {"warmup": len(warm), "pool": len(pool), "test": len(test)},
        "flaw_counts": {f: pool["flaw"].count(f) for f in sorted(set(pool["flaw"]))},
        "auroc": aurocs,
        "makeup": makeup,
        "selections": selections,
        "table": table,
        "plots": plots,
        "timings_s": timings,
    }
    (out / "story.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def story_table(aurocs: Sequence[dict], selections: Sequence[dict], makeup: Sequence[dict]) -> str:
    """The markdown summary: AUROC (any flaw) per scorer, then each selection's outcome."""
    any_flaw = [{"scorer": r["scorer"], "auroc_any_flaw": r["auroc"]} for r in aurocs if r["flaw"] == "any"]
    flawed = {m["column"]: m["flawed_share_kept"] for m in makeup}
    outcome = [
        {
            "selection": r["column"],
            "keep": r["keep"],
            "n_train": r["n_train"],
            "flawed_share": flawed.get(r["column"], math.nan),
            "heldout_loss": r["heldout_loss"],
            "accuracy": r["accuracy"],
        }
        for r in selections
    ]
    return format_table(any_flaw) + "\n\n" + format_table(outcome)


__all__ = [
    "ANATOMY",
    "BASELINE_COLUMNS",
    "SCORERS",
    "StorySettings",
    "auroc_table",
    "build_base",
    "format_table",
    "make_world",
    "pivot",
    "plot_histograms",
    "plot_roc",
    "retrain_selections",
    "run_story",
    "score_columns",
    "score_pool",
    "selection_makeup",
    "story_table",
    "warm_up",
]
