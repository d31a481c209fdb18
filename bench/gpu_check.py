"""The GPU check: parity, throughput, in-flight overhead and QLoRA in one timed run, nothing downloaded.

    python bench/gpu_check.py                           # one H100/H200: at most ~8 minutes (--budget-s 450)
    python bench/gpu_check.py --smoke                   # the same code paths on CPU, toy shapes, under a minute
    python bench/gpu_check.py --profile                 # also: where the engine's time goes (torch.profiler)

Steps, in order of value, each timed and skipped (with the reason) when the time budget runs short:
  1. parity      the engine against the literal loop (resofilter_hf.engine.oracle) on tiny Llama/Qwen2/Gemma2:
                 float32 with TF32 off (<= 1e-5 relative), float64 AdamW and SGD (<= 1e-9)
  2. throughput  gemma-2-2b shape, 512-token rows, paired and interleaved: the literal loop (fp32, bs 1), the
                 engine paper-exact (fp32 model; bf16 model, fp32 reductions), the engine on LoRA, a bf16
                 forward, a bf16 training step, at batch sizes 8/16/32; ratios to the loop and the forward;
                 peak memory of each
     smollm2     the same tasks on SmolLM2-135M-Instruct's shape (Llama, 30 layers, hidden 576, intermediate
                 1536, vocab 49,152, tied embeddings, 9 heads, 3 kv heads): the real model of the CPU figures
  3. inflight    ResonanceTrainer(resonance_when="inflight") vs SFTTrainer steps/s, qwen2.5-0.5b shape, bf16
  4. qlora       a 4-bit bitsandbytes base, LoRA adapter scores, and the adapters still move after a step
  5. profile     (--profile) the engine's bf16 scoring pass under torch.profiler: a table of the top ops
Models are written locally from the architectures' configs with random weights (speed does not depend on them).
Writes JSON and a markdown table (same name, .md) to --out, with the device name, torch version and threads.
Exit status 1 if a check failed (parity, QLoRA) or a step raised; skipped steps are not failures.
"""

import os
import time


STARTED = time.perf_counter()  # the wall time reported includes the imports below
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing from the Hub, ever
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from _common import RESULTS, machine, write_result, write_text_atomic  # noqa: E402
from _gpu_report import markdown_report  # noqa: E402
from _gpu_steps import (  # noqa: E402
    Skip,
    inflight_step,
    parity_step,
    profile_step,
    qlora_step,
    smollm2_step,
    throughput_step,
)


@dataclass(frozen=True)
class Plan:
    """Sizes of one run: the full GPU check, or the toy-sized smoke run of the same code paths."""

    shape: str  # throughput and profile (bench_scoring.SHAPES)
    smollm2_shape: str  # the smollm2 step: the throughput tasks on SmolLM2-135M's shape
    length: int  # tokens per row
    rows: int  # rows per engine/forward/train task (at least two batches)
    loop_rows: int  # rows through the literal loop
    batch_sizes: tuple[int, ...]
    repeats: int  # interleaved rounds of every throughput task
    inflight_shape: str
    inflight_length: int
    inflight_batch: int
    inflight_steps: int
    inflight_repeats: int  # alternating pairs (SFTTrainer, ResonanceTrainer)
    qlora_shape: str
    qlora_rows: int
    qlora_length: int
    parity_rows: int
    parity_length: int
    parity_batch: int
    need_s: dict  # about how long each step takes here; a step starts only if this much budget is left


PLANS = {
    "gpu": Plan(
        shape="gemma-2-2b", smollm2_shape="smollm2-135m", length=512, rows=32, loop_rows=8, batch_sizes=(8, 16, 32), repeats=5,
        inflight_shape="qwen2.5-0.5b", inflight_length=512, inflight_batch=8, inflight_steps=30, inflight_repeats=3,
        qlora_shape="qwen2.5-0.5b", qlora_rows=16, qlora_length=256,
        parity_rows=8, parity_length=64, parity_batch=3,
        need_s={"parity": 30, "throughput": 200, "smollm2": 45, "inflight": 90, "qlora": 40, "profile": 40},
    ),
    "smoke": Plan(
        shape="smoke-gemma-2", smollm2_shape="smoke-smollm2", length=32, rows=8, loop_rows=2, batch_sizes=(2, 4), repeats=2,
        inflight_shape="smoke-qwen2.5", inflight_length=32, inflight_batch=2, inflight_steps=3, inflight_repeats=2,
        qlora_shape="smoke-qwen2.5", qlora_rows=4, qlora_length=24,
        parity_rows=4, parity_length=24, parity_batch=3,
        need_s={"parity": 5, "throughput": 5, "smollm2": 4, "inflight": 5, "qlora": 5, "profile": 3},
    ),
}  # fmt: skip

STEPS = {
    "parity": parity_step,
    "throughput": throughput_step,
    "smollm2": smollm2_step,
    "inflight": inflight_step,
    "qlora": qlora_step,
    "profile": profile_step,
}


class Budget:
    """Wall-clock seconds left to the whole run; `reserve(step)` is what the later steps that will run need."""

    def __init__(self, seconds: float, need_s: dict, started: float, planned: list[str]):
        self.end = started + seconds
        self.need_s = need_s
        self.order = planned

    def left(self) -> float:
        return self.end - time.perf_counter()

    def reserve(self, step: str) -> float:
        later = self.order[self.order.index(step) + 1 :]
        return sum(self.need_s[name] for name in later)


@dataclass
class Context:
    """What every step gets: where to run, the sizes, the budget, and the command-line switches."""

    device: str
    plan: Plan
    budget: Budget
    profile: bool


def run_step(name: str, ctx: Context, skip: set[str]) -> dict:
    """One step, timed; skipped (with the reason) when asked or when the budget left is below its estimate."""
    record = {"name": name, "status": "skipped", "reason": None, "wall_s": 0.0, "result": None}
    need, left = ctx.plan.need_s[name], ctx.budget.left()
    if name in skip:
        record["reason"] = "not asked for (--skip)"
    elif name == "profile" and not ctx.profile:
        record["reason"] = "not asked for (run with --profile)"
    elif left < need:
        record["reason"] = f"time budget: {max(left, 0):.0f} s left, the step needs about {need:.0f} s"
    if record["reason"]:
        return record
    start = time.perf_counter()
    try:
        record["result"] = STEPS[name](ctx)
        record["status"] = "measured"
    except Skip as reason:
        record["reason"] = str(reason)
    except Exception as error:  # a broken step is recorded and the run goes on to the next one
        record.update(status="failed", reason=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    finally:
        gc.collect()
        if ctx.device.startswith("cuda"):
            torch.cuda.empty_cache()
    record["wall_s"] = time.perf_counter() - start
    print(f"[gpu_check] {name}: {record['status']} in {record['wall_s']:.1f} s {record['reason'] or ''}", flush=True)
    return record


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def versions() -> dict:
    found = {"transformers": transformers.__version__, "datasets": datasets.__version__}
    for name in ("trl", "peft", "accelerate", "bitsandbytes"):
        try:
            found[name] = __import__(name).__version__
        except Exception as error:  # bitsandbytes may fail at import on a machine without its backend
            found[name] = f"unavailable ({type(error).__name__})"
    return found


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="toy shapes, CPU by default, under a minute")
    parser.add_argument("--device", default=None, help="'cuda' or 'cpu' (default: cuda if available; cpu for --smoke)")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (default 450; smoke 120)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown (bench/results)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: smoke 1, else torch's)")
    parser.add_argument("--profile", action="store_true", help="profile the engine's bf16 scoring pass")
    parser.add_argument("--skip", default="", help=f"comma-separated steps to skip, of {list(STEPS)}")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if device not in ("cpu", "cuda"):
        sys.exit(f"--device must be 'cpu' or 'cuda' (the first GPU), got {args.device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device here (run with --smoke on CPU)")
    if device == "cpu" and not args.smoke:
        sys.exit("the full check needs a GPU (gemma-2-2b shapes); on CPU run it with --smoke")
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    if skip - set(STEPS):
        sys.exit(f"--skip: unknown steps {sorted(skip - set(STEPS))}; the steps are {list(STEPS)}")
    if args.threads or args.smoke:
        torch.set_num_threads(args.threads or 1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    plan = PLANS["smoke" if args.smoke else "gpu"]
    budget_s = args.budget_s or (120.0 if args.smoke else 450.0)
    planned = [name for name in STEPS if name not in skip and (name != "profile" or args.profile)]
    budget = Budget(budget_s, plan.need_s, STARTED, planned)
    ctx = Context(device=device, plan=plan, budget=budget, profile=args.profile)

    steps = [run_step(name, ctx, skip) for name in STEPS]
    info = machine(torch.get_num_threads(), device)
    info["device_name"] = torch.cuda.get_device_name(0) if device == "cuda" else cpu_name()
    failed = [s["name"] for s in steps if s["status"] == "failed" or (s["result"] or {}).get("passed") is False]
    payload = {
        "machine": info,
        "versions": versions(),
        "mode": "smoke" if args.smoke else "full",
        "budget_s": budget_s,
        "wall_s": time.perf_counter() - STARTED,
        "plan": asdict(plan),
        "steps": steps,
        "failed": failed,
    }
    path = write_result("gpu-check", payload, args.out)
    table = markdown_report(payload)
    write_text_atomic(path.with_suffix(".md"), table)
    print(table)
    print(f"-> {path}\n-> {path.with_suffix('.md')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
