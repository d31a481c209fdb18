"""Scoring at scale on the toy world: peak memory and speed against N, kill -9 resume, a streamed run, and the
cost of the full-weight fingerprint on a 1B-parameter shape.

    nice -n 10 python bench/bench_scale.py                        # everything below, ~15 min on 2 busy cores
    nice -n 10 python bench/bench_scale.py --sizes 10000 30000 --skip-stream --kills 3
    nice -n 10 python bench/bench_scale.py --new /tmp/snapshot   # measure a copy while the tree changes
    python bench/bench_scale.py --model smollm2 --gsm8k-dir DIR --only-new --sizes 32 128 384 --skip-speed \
        --skip-kill --skip-stream --skip-fingerprint          # memory against rows on a real model

- ``--model DIR`` (``smollm2``: bench/lab/smollm2.py): that model in float32 (the paper's 3 layers scored,
  ``--max-length``, default 512, batch ``--batch-size``, default 8) on GSM8K train solutions as chat rows, instead
  of the toy world's tiny model; ``--only-new`` runs this code alone (no pre-change baseline).

- RSS: each N in `--sizes` is scored in a fresh process (1 torch thread, rows read from a local parquet file,
  resume on, the defaults) by this code and by the code at `--base` (the pre-change checkout, run with
  PYTHONPATH=<base>), alternating; the peak RSS during `score(dataset)` (VmHWM reset just before it), the RSS
  before it and the whole process's peak are reported.
- Throughput: rows/s of `score()` in those same runs (ratio per size), and `--speed-repeats` back-to-back pairs
  at `--speed-rows` (order alternating); the ratio quoted is the median over the pairs.
- kill -9: a `--kill-rows` run is killed (SIGKILL) at `--kills` random points (a random number of new shards
  plus a random delay, so kills land inside batches and inside writes), resumed each time, then finished; rows
  lost, rows doubled and the max abs difference against an uninterrupted run are reported.
- Stream: `--stream-rows` rows through `load_dataset("parquet", ..., streaming=True)`, scored into parts.
- Fingerprint: `tensor_digest` over a Llama shape of ~1.1B parameters (uninitialised memory, same bytes to
  read), bf16 and fp32.

Writes JSON to bench/results/ (machine info, torch threads).
"""

import argparse
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


HERE = Path(__file__).resolve().parent
TINY = dict(num_layers=2, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1, vocab_size=512)
MAX_LENGTH = 96  # toy prompts are 39-66 tokens: every row keeps loss tokens
BATCH_SIZE = 32
CHILD_ENV = "RESOFILTER_BENCH_SCALE_CHILD"  # JSON: the child's max_length, batch size and scored layers


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Linux: reset this process's peak RSS (VmHWM) to its current RSS, so the peak is that of `score()`."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def child(mode: str, model_dir: str, data: str, out: str, n: int, result: str) -> None:
    """One scoring run in this process (under whichever resofilter_hf PYTHONPATH names)."""
    import torch

    torch.set_num_threads(1)
    from datasets import Dataset, load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from resofilter_hf import ResonanceConfig, ResonanceTrainer

    cache = Path(out) / "hf-cache"
    if mode == "stream":
        dataset = load_dataset("parquet", data_files=data, split="train", streaming=True)
        train = Dataset.from_parquet(data, cache_dir=str(cache)).select(range(8))
    else:
        dataset = Dataset.from_parquet(data, cache_dir=str(cache)).select(range(n))
        train = dataset.select(range(min(8, n)))  # SFTTrainer prepares its train set at construction: keep that out
    sizes = json.loads(os.environ.get(CHILD_ENV) or "{}")
    args = ResonanceConfig(
        output_dir=out, report_to="none", use_cpu=True, bf16=False, disable_tqdm=True,
        max_length=sizes.get("max_length", MAX_LENGTH), resonance_batch_size=sizes.get("batch_size", BATCH_SIZE),
        resonance_last_n_layers=sizes.get("last_n_layers", TINY["num_layers"]),
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=train, processing_class=AutoTokenizer.from_pretrained(model_dir)
    )
    before = _status_mb("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    if mode == "stream":
        scored = trainer.score(dataset, parts_dir=str(Path(out) / "parts"), max_rows=n)
        column = np.array([row["resonance"] for row in scored])
    else:
        column = np.asarray(trainer.score(dataset)["resonance"])
    seconds = time.perf_counter() - start
    np.save(result + ".npy", column)
    peak = _status_mb("VmHWM")  # peak RSS since the reset: during score()
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    payload = {"n": len(column), "seconds": seconds, "rss_before_mb": before, "peak_mb": peak}
    Path(result).write_text(json.dumps({**payload, "process_peak_mb": process_peak}))


def launch(pythonpath: str, mode: str, model_dir, data, out, n) -> subprocess.Popen:
    result = Path(out) / f"result-{time.time_ns()}.json"
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    cmd = [sys.executable, __file__, "--child", mode, str(model_dir), str(data), str(out), str(n), str(result)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc.result = result
    return proc


def run(pythonpath, mode, model_dir, data, out, n) -> dict:
    proc = launch(pythonpath, mode, model_dir, data, out, n)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run ({pythonpath}) failed:\n{err[-3000:]}")
    payload = json.loads(proc.result.read_text())
    payload["column"] = np.load(str(proc.result) + ".npy")
    return payload


def bench_rss(args, model_dir, data, work) -> dict:
    rows = []
    codes = (("new", args.new),) if args.only_new else (("base", args.base), ("new", args.new))
    for n in args.sizes:
        for name, path in codes:
            out = Path(tempfile.mkdtemp(dir=work, prefix=f"{name}-{n}-"))
            got = run(path, "score", model_dir, data, out, n)
            rows.append({"code": name, "n": n, "seconds": got["seconds"], "rows_per_s": n / got["seconds"],
                         "rss_before_mb": got["rss_before_mb"], "peak_mb": got["peak_mb"],
                         "process_peak_mb": got["process_peak_mb"]})  # fmt: skip
            print(f"  {name:4s} N={n:6d}: {n / got['seconds']:7.2f} rows/s, peak RSS {got['peak_mb']:7.1f} MB "
                  f"(before score() {got['rss_before_mb']:.1f} MB)", flush=True)  # fmt: skip
    by = {(r["code"], r["n"]): r for r in rows}
    lo, hi = min(args.sizes), max(args.sizes)
    growth = {code: by[(code, hi)]["peak_mb"] - by[(code, lo)]["peak_mb"] for code, _ in codes}
    ratios = [by[("new", n)]["rows_per_s"] / by[("base", n)]["rows_per_s"] for n in args.sizes if ("base", n) in by]
    return {
        "runs": rows,
        "peak_growth_mb": growth,
        "speed_ratios": ratios,
        "speed_ratio_median": statistics.median(ratios) if ratios else None,
    }


def bench_speed(args, model_dir, data, work) -> dict:
    """rows/s of base and new at `--speed-rows`, run back to back `--speed-repeats` times (order alternating)."""
    rates = {"base": [], "new": []}
    for repeat in range(args.speed_repeats):
        order = [("base", args.base), ("new", args.new)][:: 1 if repeat % 2 == 0 else -1]
        for name, path in order:
            out = Path(tempfile.mkdtemp(dir=work, prefix=f"speed-{name}-"))
            got = run(path, "score", model_dir, data, out, args.speed_rows)
            rates[name].append(args.speed_rows / got["seconds"])
        print(f"  pair {repeat}: base {rates['base'][-1]:.0f} rows/s, new {rates['new'][-1]:.0f} rows/s", flush=True)
    ratios = [b / a for a, b in zip(rates["base"], rates["new"])]
    return {"rows": args.speed_rows, "rates": rates, "ratios": ratios, "ratio_median": statistics.median(ratios)}


def _markers(out: Path) -> int:
    return len(list((out / "resonance").glob("*/w*-s*.done")))


def bench_kills(args, model_dir, data, work) -> dict:
    new = args.new
    whole = run(new, "score", model_dir, data, Path(tempfile.mkdtemp(dir=work, prefix="whole-")), args.kill_rows)
    out = Path(tempfile.mkdtemp(dir=work, prefix="killed-"))
    rng = random.Random(args.seed)
    kills = []
    for _ in range(args.kills):
        proc = launch(new, "score", model_dir, data, out, args.kill_rows)
        start = _markers(out)
        target = start + rng.randint(1, 12)
        while proc.poll() is None and _markers(out) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.5))  # inside a batch, or inside a write
        if proc.poll() is not None:
            raise RuntimeError("the run finished before it could be killed; use more rows")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append({"shards_before": start, "shards_after": _markers(out)})
        print(f"  kill -9 after {kills[-1]['shards_after']} finished shards", flush=True)
    final = run(new, "score", model_dir, data, out, args.kill_rows)

    sys.path.insert(0, str(HERE.parent))
    from resofilter_hf.engine.shards import ShardStore

    (folder,) = [p for p in (out / "resonance").iterdir() if p.is_dir() and not p.name.startswith(".")]
    ids = np.concatenate([ShardStore(folder).read([m.stem]).column("id").to_numpy() for m in folder.glob("*.done")])
    counts = np.bincount(ids, minlength=args.kill_rows)
    a, b = final["column"], whole["column"]
    both = np.isfinite(a) & np.isfinite(b)
    return {
        "rows": args.kill_rows,
        "kills": kills,
        "rows_lost": int((counts == 0).sum()),
        "rows_doubled": int((counts > 1).sum()),
        "nan_pattern_equal": bool(np.array_equal(np.isnan(a), np.isnan(b))),
        "max_abs_diff": float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0,
        "bit_identical": bool(np.array_equal(a.view(np.int64), b.view(np.int64))),
    }


def bench_stream(args, model_dir, data, work) -> dict:
    """`--stream-rows` rows streamed from the parquet file into parts, by the base code and this code, alternating."""
    runs = {}
    for name, path in (("base", args.base), ("new", args.new)):
        out = Path(tempfile.mkdtemp(dir=work, prefix=f"stream-{name}-"))
        got = run(path, "stream", model_dir, data, out, args.stream_rows)
        print(f"  {name:4s} stream N={got['n']}: {got['n'] / got['seconds']:.0f} rows/s, peak RSS "
              f"{got['peak_mb']:.1f} MB", flush=True)  # fmt: skip
        parts = sorted((out / "parts").glob("*.parquet"))
        keep = ("seconds", "peak_mb", "rss_before_mb")
        runs[name] = {"rows": got["n"], **{k: got[k] for k in keep}, "rows_per_s": got["n"] / got["seconds"],
                      "parts": len(parts), "finite": int(np.isfinite(got["column"]).sum())}  # fmt: skip
    return {**runs["new"], "base": runs["base"], "speed_ratio": runs["new"]["rows_per_s"] / runs["base"]["rows_per_s"]}


def bench_fingerprint() -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(HERE.parent))
    from resofilter_hf.engine.fingerprint import tensor_digest

    config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                         num_key_value_heads=4, vocab_size=32000)  # fmt: skip  # TinyLlama-1.1B
    out = {}
    for dtype in (torch.bfloat16, torch.float32):
        with torch.device("meta"):
            model = LlamaForCausalLM(config).to(dtype)
        model = model.to_empty(device="cpu")
        params = sum(p.numel() for p in model.parameters())
        for p in model.parameters():  # touch the pages once, so the timing is the hash, not page faults
            p.data.zero_()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            tensor_digest(model)
            times.append(time.perf_counter() - start)
        gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9
        out[str(dtype).replace("torch.", "")] = {"parameters": params, "gigabytes": gb,
                                                 "seconds_median": statistics.median(times), "seconds": times}  # fmt: skip
        print(f"  fingerprint {params / 1e9:.2f}B params {dtype}: {statistics.median(times):.2f} s "
              f"({gb / statistics.median(times):.2f} GB/s)", flush=True)  # fmt: skip
        del model
    return out


def real_model_data(args, n_rows: int, data: Path, payload: dict) -> str:
    """``--model``: the model folder; `n_rows` GSM8K train solutions written to `data` as chat rows; the children's
    sizes set (through the environment) and recorded in `payload`."""
    sys.path.insert(0, str(HERE))
    from resofilter_hf.evaluation.gsm8k import load_gsm8k

    from lab.gsm8k_real import chat_rows
    from lab.smollm2 import resolve_model

    model_dir, name = resolve_model(args.model)
    train = load_gsm8k("train", path=args.gsm8k_dir)
    if len(train) < n_rows:
        raise SystemExit(f"--gsm8k-dir {args.gsm8k_dir}: {len(train)} train rows, fewer than the {n_rows} asked for")
    train = train.select(range(n_rows))
    chat_rows(train["question"], train["answer"]).to_parquet(str(data))
    sizes = {"max_length": args.max_length, "batch_size": args.batch_size, "last_n_layers": 3}
    os.environ[CHILD_ENV] = json.dumps(sizes)
    payload.update(model=name, model_dir=model_dir, tiny_model=None, **sizes)
    return model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="/tmp/base", help="the pre-change checkout (PYTHONPATH for baseline runs)")
    parser.add_argument("--new", default=str(HERE.parent), help="PYTHONPATH of the code measured (default: here)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--speed-rows", type=int, default=10_000)
    parser.add_argument("--speed-repeats", type=int, default=3, help="back-to-back pairs for the speed ratio")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--kill-rows", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--stream-rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--skip-fingerprint", action="store_true")
    parser.add_argument("--model", default=None, help="a model folder, or 'smollm2': a real model, GSM8K chat rows")
    parser.add_argument("--gsm8k-dir", default=os.environ.get("RESOFILTER_GSM8K_DIR"), help="with --model")
    parser.add_argument("--max-length", type=int, default=512, help="with --model")
    parser.add_argument("--batch-size", type=int, default=8, help="with --model")
    parser.add_argument("--only-new", action="store_true", help="no baseline runs of the pre-change code")
    parser.add_argument("--child", nargs=6, metavar=("MODE", "MODEL", "DATA", "OUT", "N", "RESULT"))
    args = parser.parse_args()
    if args.child:
        mode, model_dir, data, out, n, result = args.child
        return child(mode, model_dir, data, out, int(n), result)

    sys.path.insert(0, str(HERE.parent))
    from resofilter_hf.toy import build_tiny_model, make_math_problems

    from _common import machine, write_result

    payload = {"machine": machine(1, "cpu"), "tiny_model": TINY, "batch_size": BATCH_SIZE, "max_length": MAX_LENGTH,
               "load_average_at_start": os.getloadavg()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as work:
        wanted = [*args.sizes, args.speed_rows if not args.skip_speed else 0]
        n_max = max(
            [*wanted, args.kill_rows if not args.skip_kill else 0, args.stream_rows if not args.skip_stream else 0]
        )
        data = Path(work) / "rows.parquet"
        if args.model:
            model_dir = real_model_data(args, n_max, data, payload)
        else:
            model_dir = build_tiny_model(Path(work) / "model", seed=0, arch="llama", **TINY)
            make_math_problems(n_max, seed=0, flaw_rate=0.3).to_parquet(str(data))
        if not args.skip_fingerprint:
            print("fingerprint cost:", flush=True)
            payload["fingerprint"] = bench_fingerprint()
        if not args.skip_rss:
            print("peak RSS and throughput against N (base = pre-change code):", flush=True)
            payload["rss"] = bench_rss(args, model_dir, data, work)
            print(f"  peak growth {min(args.sizes)} -> {max(args.sizes)}: {payload['rss']['peak_growth_mb']}; "
                  f"speed new/base median {payload['rss']['speed_ratio_median']}", flush=True)  # fmt: skip
        if not args.skip_speed:
            print(f"throughput at {args.speed_rows} rows, {args.speed_repeats} back-to-back pairs:", flush=True)
            payload["speed"] = bench_speed(args, model_dir, data, work)
            print(f"  new/base median {payload['speed']['ratio_median']:.3f}", flush=True)
        if not args.skip_kill:
            print(f"kill -9 at {args.kills} random points of a {args.kill_rows}-row run:", flush=True)
            payload["kill"] = bench_kills(args, model_dir, data, work)
            print(f"  {json.dumps({k: v for k, v in payload['kill'].items() if k != 'kills'})}", flush=True)
        if not args.skip_stream:
            print(f"streamed run of {args.stream_rows} rows:", flush=True)
            payload["stream"] = bench_stream(args, model_dir, data, work)
    payload["load_average_at_end"] = os.getloadavg()
    name = f"scale-{payload['model'].lower()}" if args.model else "scale"
    print(f"wrote {write_result(name, payload)}")


if __name__ == "__main__":
    main()
