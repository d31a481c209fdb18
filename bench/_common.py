"""Shared bits of the benchmarks: machine description, timing, JSON output."""

import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

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


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{payload['machine']['device'].split(':')[0]}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
