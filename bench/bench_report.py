"""How long `resofilter report` takes on a large scored file, against reading it and applying the selection rule.

    python bench/bench_report.py                 # 10,000 toy rows, 3 repeats
    python bench/bench_report.py --rows 50000 --repeats 5

The file has what `resofilter score` writes with `resonance_anatomy` (score, loss, tokens, status, anatomy), the
toy world's prompts, completions and flaw labels, and scores made up around lr with the flawed rows higher (no
model runs: this times the report, not the scorer). Each repeat times, back to back, the baseline (load the parquet
file and `select_by_resonance(keep=0.5)`, what a user does with it anyway) and `report()` on the same file; the
ratio is the median over those pairs. The report's CPU time is recorded too: on a shared machine it is what the
wall time would be on an idle core. Writes JSON to bench/results/.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from resofilter_hf import report, select_by_resonance
from resofilter_hf.provenance import load_scored, with_provenance, write_parquet
from resofilter_hf.toy import make_math_problems

from _common import machine, median_ratio, write_result


def scored_file(rows: int, folder: Path) -> Path:
    data = make_math_problems(rows, seed=0, flaw_rate=0.3)
    rng = np.random.default_rng(0)
    flawed = np.array([f != "none" for f in data["flaw"]])
    tokens = np.array([len(c) // 4 for c in data["completion"]])
    resonance = 1e-5 * (1 - 1.7e-4 + 1.5e-5 * rng.standard_normal(rows) + 1e-5 * flawed - 2e-7 * tokens)
    columns = {
        "resonance": resonance,
        "resonance_loss": rng.gamma(4.0, 0.4, rows) + flawed,
        "resonance_tokens": tokens,
        "resonance_toward_zero": 0.49 + 0.005 * rng.standard_normal(rows),
        "resonance_below_eps": np.abs(1e-4 * rng.standard_normal(rows)),
        "resonance_grad_norm": rng.gamma(6.0, 0.03, rows),
    }
    for name, values in columns.items():
        data = data.add_column(name, values.tolist())
    data = data.add_column("resonance_status", ["ok"] * rows)
    provenance = {"model_id": "toy/tiny-llama", "optimizer": "adamw", "metric": "mean_abs", "lr": 1e-5,
                  "column": "resonance", "n_rows": rows, "n_scored": rows, "n_unscored": 0}  # fmt: skip
    data = with_provenance(data, scoring=provenance)
    return write_parquet(data, folder / "scored.parquet", {"scoring": provenance})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = scored_file(args.rows, Path(tmp))
        report(path, Path(tmp) / "warm.html")  # imports and matplotlib's font cache, outside the timings
        baseline, timed, cpu = [], [], []
        for k in range(args.repeats):
            start = time.perf_counter()
            select_by_resonance(load_scored(path), keep=0.5)
            baseline.append(time.perf_counter() - start)
            start, start_cpu = time.perf_counter(), time.process_time()
            out = report(path, Path(tmp) / f"report-{k}.html")
            timed.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        size = out.stat().st_size
    ratio = median_ratio(timed, baseline)
    result = {
        "machine": machine(1, "cpu"),
        "rows": args.rows,
        "repeats": args.repeats,
        "report_s": timed,
        "load_and_select_s": baseline,
        "report_median_s": statistics.median(timed),
        "report_cpu_s": cpu,  # this process's CPU time: what the wall time would be on an idle core
        "report_cpu_median_s": statistics.median(cpu),
        "load_and_select_median_s": statistics.median(baseline),
        "ratio_report_to_load_and_select": ratio,
        "report_bytes": size,
    }
    print(
        f"{args.rows:,} rows: report {statistics.median(timed):.2f} s (median of {args.repeats}; CPU time "
        f"{statistics.median(cpu):.2f} s), load + select "
        f"{statistics.median(baseline):.2f} s; ratio {ratio:.1f}x; page {size / 1e6:.2f} MB"
    )
    print(f"wrote {write_result('report', result)}")


if __name__ == "__main__":
    main()
