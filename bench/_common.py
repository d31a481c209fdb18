"""Shared bits of the benchmarks: machine description, timing, JSON output; the GSM8K benches' proxy settings and
command line; alignment scoring and AUROC per flaw within length strata (the flag benches)."""

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch


RESULTS = Path(__file__).resolve().parent / "results"


def machine(threads: int, device: str) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None


def peak_memory(fn, device: str) -> tuple[object, int | None]:
    """`fn()` and the bytes at its peak: on CUDA, the allocator's peak above what was allocated when it began;
    on CPU (Linux), the process's peak resident set, reset first through /proc/self/clear_refs; else None."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = fn()
        torch.cuda.synchronize()
        return result, torch.cuda.max_memory_allocated() - start
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return fn(), None
    result = fn()
    peak = _peak_rss_kib()
    return result, None if peak is None else peak * 1024


def interleaved_rates(tasks: dict, repeats: int, device: str) -> dict[str, list[float]]:
    """samples/s of each task {name: (fn, n_samples)}, run in turn `repeats` times, so drift hits all alike."""
    rates = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, (fn, n_samples) in tasks.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            rates[name].append(n_samples / (time.perf_counter() - start))
    return rates


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-repeat ratios (each pair measured back to back)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary name in the same folder, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_result(name: str, payload: dict, folder: Path = RESULTS) -> Path:
    """`payload` as JSON in `folder`, named by benchmark, device kind and UTC time."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{name}-{payload['machine']['device'].split(':')[0]}-{stamp}.json"
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")
    return path


# ---- the GSM8K benches (bench_gsm8k_scores, bench_gsm8k_flaws): one proxy, one way to find the data ------------

GSM8K_PROXY = {  # the tiny scoring model and its warm-up, shared so both benches score alike
    "warmup": {"max_steps": 200, "batch_size": 16, "learning_rate": 2e-3, "max_length": 512},
    "model": {"num_layers": 4, "hidden_size": 128, "intermediate_size": 256, "num_heads": 4, "num_kv_heads": 2},
    "vocab_size": 1024,  # tokenizer trained on all GSM8K train questions and answers
    "max_length": 512,
    "scorers": ["resonance", "resonance_sgd", "resonance_adamw_state", "resonance_l2", "resonance_all_layers"],
    "scoring_batch_size": 16,
}


def gsm8k_cli(description: str, threads: int, default_out: Path, work_prefix: str, model_option: str | None = None):
    """The GSM8K benches' command line: ``--gsm8k-dir`` (required, nothing is fetched), ``--work-dir``, ``--out``,
    ``--smoke`` (and ``--model``, described by `model_option`, when given); then quiet progress bars and logs and
    `threads` torch threads. (args, work folder, out folder), both made; the work folder is a fresh temporary one
    unless given."""
    import tempfile

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--gsm8k-dir",
        default=os.environ.get("RESOFILTER_GSM8K_DIR"),
        help="folder with GSM8K train.jsonl/test.jsonl (default: $RESOFILTER_GSM8K_DIR; required, nothing is fetched)",
    )
    parser.add_argument("--work-dir", default=None, help="keeps each seed's work; a rerun resumes from it")
    parser.add_argument("--out", default=str(default_out), help="folder for the results (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="a few rows and steps, to check the script")
    if model_option:
        parser.add_argument("--model", default=None, help=model_option)
    args = parser.parse_args()
    if not args.gsm8k_dir:
        parser.error("give --gsm8k-dir or set RESOFILTER_GSM8K_DIR: the benchmark reads local GSM8K files")

    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.set_verbosity_error()
    torch.set_num_threads(threads)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix=work_prefix))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"work dir: {work}", flush=True)
    return args, work, out


# ---- flagging flawed rows (bench_length_strata, bench_gsm8k_flaws) ---------------------------------------------

STRATA = 4  # length quartiles
ALIGNMENT = {  # column -> ResonanceConfig overrides (alignment with the clean reference set)
    "alignment_grad": {"resonance_optimizer": "sgd", "resonance_weight_decay": 0.0},
    "alignment_adamw": {"resonance_optimizer": "adamw"},
}
FLAG_SIGNS = {  # column -> sign that makes "higher = more likely flawed"
    "resonance": 1,
    "resonance_sgd": 1,
    "resonance_grad_norm": 1,
    "alignment_grad": -1,
    "alignment_adamw": -1,
    "baseline_loss": 1,
    "baseline_ifd": 1,
    "baseline_length": 1,
    "baseline_random": 1,
}


def score_alignment(model_dir: Path, pool, reference, work: Path, max_length: int = 256) -> dict[str, np.ndarray]:
    """Each `pool` row's alignment with `reference` under every `ALIGNMENT` transform, by the model in `model_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from resofilter_hf import ResonanceConfig, ResonanceTrainer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out = {}
    for name, options in ALIGNMENT.items():
        args = ResonanceConfig(
            output_dir=str(work / name), report_to="none", use_cpu=True, disable_tqdm=True, max_length=max_length,
            resonance_resume=False, resonance_batch_size=16, **options,
        )  # fmt: skip
        trainer = ResonanceTrainer(model=model, args=args, train_dataset=pool, processing_class=tokenizer)
        out[name] = np.asarray(trainer.score(reference=reference)["resonance_alignment"], dtype=np.float64)
    return out


def strata_of(length: np.ndarray) -> np.ndarray:
    """Each row's length quartile (0 .. STRATA - 1)."""
    edges = np.nanquantile(length, np.linspace(0, 1, STRATA + 1)[1:-1])
    return np.searchsorted(edges, length, side="right")


def residualised(values: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The score minus its least-squares fit on (1, log length, log length^2): what length does not explain."""
    ok = np.isfinite(values) & np.isfinite(length) & (length > 0)
    x = np.log(np.where(ok, length, 1.0))
    design = np.stack([np.ones_like(x), x, x * x], axis=1)
    coef, *_ = np.linalg.lstsq(design[ok], values[ok], rcond=None)
    return np.where(ok, values - design @ coef, np.nan)


def auroc_rows(
    columns: dict[str, np.ndarray], flaws: np.ndarray, strata: np.ndarray, length: np.ndarray | None = None
) -> list[dict]:
    """AUROC per column and flaw: overall, the mean over length strata that hold both classes, and (with `length`)
    of the length-residualised column."""
    from resofilter_hf.demo.stats import auroc

    clean = flaws == "none"
    rows = []
    for name, values in columns.items():
        resid = residualised(values, length) if length is not None else None
        for kind in [*sorted(set(flaws) - {"none"}), "any"]:
            flawed = ~clean if kind == "any" else flaws == kind
            within = []
            for s in range(STRATA):
                subset = (flawed | clean) & (strata == s)
                if flawed[subset].any() and clean[subset].any():
                    within.append(auroc(values[subset], flawed[subset]))
            subset = flawed | clean
            row = {
                "scorer": name,
                "flaw": kind,
                "auroc": auroc(values[subset], flawed[subset]),
                "auroc_within_length": float(np.mean(within)) if within else float("nan"),
                "strata_used": len(within),
            }
            if resid is not None:
                row["auroc_length_residualised"] = auroc(resid[subset], flawed[subset])
            rows.append(row)
    return rows
