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
