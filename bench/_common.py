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


def median_rate(fn, n_samples: int, repeats: int, device: str) -> tuple[float, list[float]]:
    """Median samples/s of `fn` (which processes n_samples) over `repeats` timed runs."""
    rates = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        rates.append(n_samples / (time.perf_counter() - start))
    return statistics.median(rates), rates


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{payload['machine']['device'].split(':')[0]}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
