"""The steps of bench/gpu_check.py. Each takes the run's context and returns a JSON-ready dict.

They reach the library only through its public entry points: `ResonanceTrainer(...).score()` and `.train()`,
`ResonanceConfig` fields, and the oracle `literal_loop_scores`.
"""

import contextlib
import dataclasses
import functools
import statistics
import tempfile
import time

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.engine.oracle import literal_loop_scores
from resofilter_hf.toy import cached_tiny_model

from _common import interleaved_rates, median_ratio, peak_memory, sync
from bench_inflight import run as train_run
from bench_scoring import SHAPES, build_model, forward_only, make_rows, train_steps


class Skip(Exception):
    """A step that cannot run here (a missing package, a missing GPU); the message is the reason."""


# (label, dtype, optimizer, lr, relative tolerance); SGD at lr 1e-2 takes a step well above fp64 rounding of W
PARITY_CASES = [
    ("float32 adamw (TF32 off)", torch.float32, "adamw", 1e-5, 1e-5),
    ("float64 adamw", torch.float64, "adamw", 1e-5, 1e-9),
    ("float64 sgd", torch.float64, "sgd", 1e-2, 1e-9),
]
PARITY_ARCHS = ("llama", "qwen2", "gemma2")
LORA = dict(r=16, target_modules="all-linear", lora_dropout=0.0)


def has_batch_tokens() -> bool:
    """Whether this version of ResonanceConfig batches by a token budget (`resonance_batch_tokens`)."""
    return "resonance_batch_tokens" in {f.name for f in dataclasses.fields(ResonanceConfig)}


def tokenizer():
    """A local tokenizer: pre-tokenized rows need it only for padding (pad id 0, as make_rows assumes)."""
    return AutoTokenizer.from_pretrained(cached_tiny_model())


def score_trainer(model, rows: list[dict], device: str, batch_size: int, peft_config=None, **resonance):
    """A ResonanceTrainer for scoring `rows` as a user would build one; nothing written to disk."""
    args = ResonanceConfig(
        output_dir=tempfile.mkdtemp(prefix="gpu-check-"), report_to="none", use_cpu=device == "cpu", bf16=False,
        disable_tqdm=True, resonance_resume=False, resonance_batch_size=batch_size, **resonance,
    )  # fmt: skip
    return ResonanceTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer(),
        peft_config=peft_config,
    )  # fmt: skip


def up_proj_names(model) -> list[str]:
    """The paper's targets, named independently of the engine: mlp.up_proj of the last 3 decoder layers."""
    names = [n for n, _ in model.named_parameters() if n.endswith("mlp.up_proj.weight")]
    return names[-3:]


@contextlib.contextmanager
def tf32_off():
    """float32 matmuls and convolutions in full precision (TF32 would cost parity its 5th digit)."""
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


def parity_case(ctx, model_dir, dtype, optimizer: str, lr: float) -> tuple[float, str, bool]:
    """Max relative error of the engine's scores against the literal loop's, the row lengths, all rows scored.

    Rows are of uneven lengths (padded batches) where the model runs SDPA attention. transformers' eager
    attention (Gemma-2's) takes its softmax in float32 even in a float64 model, so a padded batch differs from
    batch size 1 there by ~1e-7 whatever the engine does: those rows are of one length (batched, not padded).
    """
    plan = ctx.plan
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    uneven = model.config._attn_implementation != "eager"
    shortest = plan.parity_length // 2 if uneven else None
    rows = make_rows(plan.parity_rows, plan.parity_length, model.config.vocab_size, seed=1, min_length=shortest)
    trainer = score_trainer(model, rows, ctx.device, plan.parity_batch, resonance_optimizer=optimizer, resonance_lr=lr)
    scored = trainer.score(Dataset.from_list(rows))
    got = np.array(scored["resonance"])
    names = up_proj_names(trainer.model)
    reference = np.array(literal_loop_scores(trainer.model, rows, names, optimizer=optimizer, lr=lr))
    lengths = sorted(len(r["input_ids"]) for r in rows)
    all_scored = scored["resonance_status"] == ["ok"] * len(rows)
    return float(np.max(np.abs(got - reference) / np.abs(reference))), f"{lengths[0]}-{lengths[-1]}", all_scored


def parity_step(ctx) -> dict:
    cases = []
    with tf32_off():
        for arch in PARITY_ARCHS:
            model_dir = cached_tiny_model(arch=arch)
            for label, dtype, optimizer, lr, tolerance in PARITY_CASES:
                error, lengths, all_scored = parity_case(ctx, model_dir, dtype, optimizer, lr)
                ok = error <= tolerance and all_scored
                cases.append(
                    dict(arch=arch, case=label, max_rel_err=error, tolerance=tolerance, row_lengths=lengths, passed=ok)
                )
    return {
        "cases": cases,
        "passed": all(c["passed"] for c in cases),
        "rows": ctx.plan.parity_rows,
        "batch_size": ctx.plan.parity_batch,
    }


def param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def state_bytes(optimizer) -> int:
    return sum(
        t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )


@dataclasses.dataclass
class Task:
    """One timed workload: `run(rows)`; `resident` is what it holds between calls (weights, optimizer state)."""

    name: str
    kind: str
    batch_size: int
    run: object
    rows: list
    resident: object  # () -> bytes


def throughput_tasks(ctx, rows, loop_rows, shape) -> tuple[list[Task], dict]:
    """The models of `shape` (fp32, bf16, bf16 + LoRA, bf16 for training) and a task per (workload, batch size)."""
    plan, device = ctx.plan, ctx.device
    fp32, bf16 = build_model(shape, torch.float32, device), build_model(shape, torch.bfloat16, device)
    paper32 = score_trainer(fp32, rows, device, 1)
    paper16 = score_trainer(bf16, rows, device, 1)
    lora = score_trainer(build_model(shape, torch.bfloat16, device), rows, device, 1, LoraConfig(**LORA))
    trained = build_model(shape, torch.bfloat16, device)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-5)
    collator = DataCollatorForLanguageModeling(pad_token_id=0)
    names = up_proj_names(fp32)

    def scores(trainer, batch_size, tokens=None):
        def run(rows):
            trainer.args.resonance_batch_size = batch_size
            if tokens:
                trainer.args.resonance_batch_tokens = tokens
            trainer.score(Dataset.from_list(rows))

        return run

    weights = {id(t): (lambda m=t.model: param_bytes(m)) for t in (paper32, paper16, lora)}
    tasks = [
        Task("loop fp32", "loop", 1, lambda r: literal_loop_scores(fp32, r, names), loop_rows, weights[id(paper32)])
    ]
    for bs in plan.batch_sizes:
        some = rows[: max(plan.rows, 2 * bs)]
        tasks += [
            Task(f"engine fp32 bs{bs}", "engine fp32", bs, scores(paper32, bs), some, weights[id(paper32)]),
            Task(f"engine bf16 bs{bs}", "engine bf16", bs, scores(paper16, bs), some, weights[id(paper16)]),
            Task(f"engine lora bs{bs}", "engine lora", bs, scores(lora, bs), some, weights[id(lora)]),
            Task(f"forward bf16 bs{bs}", "forward bf16", bs, lambda r, b=bs: forward_only(bf16, collator, r, b), some,
                 lambda: param_bytes(bf16)),
            Task(f"train bf16 bs{bs}", "train bf16", bs, lambda r, b=bs: train_steps(trained, optimizer, collator, r, b),
                 some, lambda: param_bytes(trained) + state_bytes(optimizer)),
        ]  # fmt: skip
    if has_batch_tokens():  # a token budget of the middle batch size's rows, the row cap well above it
        bs = plan.batch_sizes[len(plan.batch_sizes) // 2]
        cap, tokens = 2 * max(plan.batch_sizes), plan.length * bs
        tasks.append(Task(f"engine bf16 {tokens} tokens", "engine bf16 tokens", bs, scores(paper16, cap, tokens),
                          rows[: max(plan.rows, 2 * bs)], weights[id(paper16)]))  # fmt: skip
    return tasks, {"paper16": paper16, "held": [paper32, lora, fp32, bf16, trained, optimizer]}


def timed(task: Task, device: str, peaks: dict, failures: dict):
    """`task` as a no-argument call for interleaved timing; records its peak memory, or an out-of-memory error."""

    def call():
        if task.name in failures:
            return
        try:
            _, extra = peak_memory(lambda: task.run(task.rows), device)
        except torch.cuda.OutOfMemoryError as error:
            failures[task.name] = f"out of memory: {str(error).splitlines()[0]}"
            torch.cuda.empty_cache()
            return
        if extra is not None:
            peak = extra + (task.resident() if device == "cuda" else 0)  # on CPU: the process's peak RSS
            peaks[task.name] = max(peaks.get(task.name, 0), peak)

    return call


def throughput_step(ctx) -> dict:
    return shape_throughput(ctx, ctx.plan.shape, "throughput")


def smollm2_step(ctx) -> dict:
    """The throughput tasks on SmolLM2-135M-Instruct's shape (random weights), the real model of the CPU figures."""
    return shape_throughput(ctx, ctx.plan.smollm2_shape, "smollm2")


def shape_throughput(ctx, shape: str, step: str) -> dict:
    """Every throughput task on `shape`, interleaved for `plan.repeats` rounds or as many as the budget of `step`
    allows."""
    plan, device = ctx.plan, ctx.device
    rows = make_rows(max(plan.rows, 2 * max(plan.batch_sizes)), plan.length, SHAPES[shape][2]["vocab_size"])
    tasks, keep = throughput_tasks(ctx, rows, rows[: plan.loop_rows], shape)
    peaks, failures = {}, {}
    calls = {t.name: timed(t, device, peaks, failures) for t in tasks}
    for task in tasks:  # warm-up: one batch each (kernels, allocator, TRL's dataset preparation)
        warm = dataclasses.replace(task, rows=task.rows[: task.batch_size])
        timed(warm, device, {}, failures)()
    runs = {t.name: [] for t in tasks}
    reserve, stopped = ctx.budget.reserve(step), None
    for repeat in range(plan.repeats):
        start = time.perf_counter()
        for name, rates in interleaved_rates({t.name: (calls[t.name], len(t.rows)) for t in tasks}, 1, device).items():
            runs[name] += rates
        spent = time.perf_counter() - start
        if repeat + 1 < plan.repeats and ctx.budget.left() - reserve < spent:
            stopped = f"time budget: stopped after {repeat + 1} of {plan.repeats} rounds"
            break
    preparation = preparation_s(keep["paper16"], rows)
    del keep
    summary = summarise(tasks, runs, peaks, failures, shape, plan, device)
    return summary | {"stopped_early": stopped, "preparation_s": preparation, "preparation_rows": len(rows)}


def preparation_s(trainer, rows: list[dict]) -> float | None:
    """Median seconds of the part of score() that is no model work: the Dataset and TRL's preparation of it."""
    prepare = getattr(trainer, "prepare_scoring_dataset", None)
    if prepare is None:
        return None
    times = []
    for _ in range(3):
        start = time.perf_counter()
        prepare(Dataset.from_list(rows))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def summarise(tasks, runs, peaks, failures, shape, plan, device) -> dict:
    """Medians, paired ratios to the loop and to the bf16 forward at the same batch size, peaks, the goals."""
    runs = {name: values for name, values in runs.items() if name not in failures}
    table = []
    for task in tasks:
        entry = {"task": task.name, "kind": task.kind, "batch_size": task.batch_size, "rows": len(task.rows)}
        if task.name in failures:
            table.append(entry | {"error": failures[task.name]})
            continue
        forward = f"forward bf16 bs{task.batch_size}"
        entry["samples_per_s"] = statistics.median(runs[task.name])
        if task.kind != "loop" and "loop fp32" in runs:
            entry["over_loop"] = median_ratio(runs[task.name], runs["loop fp32"])
        if task.kind not in ("loop", "forward bf16") and forward in runs:
            entry["over_forward"] = median_ratio(runs[task.name], runs[forward])
        entry["peak_mib"] = peaks[task.name] / 2**20 if task.name in peaks else None
        table.append(entry)
    return {
        "shape": shape,
        "tokens_per_row": plan.length,
        "tf32": torch.get_float32_matmul_precision() != "highest",
        "peak_memory": "the task's weights and optimizer state + the CUDA allocator's peak above its start"
        if device == "cuda"
        else "the process's peak RSS (all models resident)",
        "batch_tokens_field": has_batch_tokens(),
        "tasks": table,
        "runs": runs,
        "goals": goals(table, device),
    }


def goals(table: list[dict], device: str) -> list[dict]:
    """The engine's targets, each at its best batch size: speed against the forward, memory against training
    (on CUDA only: on CPU the peak is the whole process's)."""
    found = []
    for kind, target in (("engine bf16", 0.75), ("engine lora", 0.8)):
        ratios = [e["over_forward"] for e in table if e["kind"] == kind and "over_forward" in e]
        if ratios:
            found.append({"goal": f"{kind} >= {target}x the bf16 forward", "value": max(ratios),
                          "met": max(ratios) >= target})  # fmt: skip
    peaks = {(e["kind"], e["batch_size"]): e.get("peak_mib") for e in table} if device == "cuda" else {}
    pairs = [(peaks[k], peaks.get(("train bf16", k[1]))) for k in peaks if k[0] == "engine bf16"]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if pairs:
        found.append({"goal": "engine bf16 peak memory <= a bf16 training step's, every batch size",
                      "value": max(a / b for a, b in pairs), "met": all(a <= b for a, b in pairs)})  # fmt: skip
    return found


def inflight_step(ctx) -> dict:
    """bench_inflight's run: the two trainers alternate, same weights, rows and seed; overhead per step."""
    plan, device = ctx.plan, ctx.device
    rows = make_rows(
        plan.inflight_steps * plan.inflight_batch, plan.inflight_length, SHAPES[plan.inflight_shape][2]["vocab_size"]
    )
    dataset, tok = Dataset.from_list(rows), tokenizer()
    runners = {
        "sft": (SFTTrainer, SFTConfig, {}),
        "inflight": (ResonanceTrainer, ResonanceConfig, {"resonance_when": "inflight", "resonance_resume": False}),
    }
    common = (plan.inflight_shape, torch.bfloat16, device, dataset, tok)
    train_run(SFTTrainer, SFTConfig, *common, 2, plan.inflight_batch, {})  # warm-up
    rates, peaks, stopped = {name: [] for name in runners}, {}, None
    reserve = ctx.budget.reserve("inflight")
    for repeat in range(plan.inflight_repeats):
        start = time.perf_counter()
        for name, (cls, config_cls, extra) in runners.items():
            train = functools.partial(
                train_run, cls, config_cls, *common, plan.inflight_steps, plan.inflight_batch, extra
            )
            rate, peak = peak_memory(train, device)
            rates[name].append(rate)
            peaks[name] = max(peaks.get(name, 0), peak or 0) or None
        if repeat + 1 < plan.inflight_repeats and ctx.budget.left() - reserve < time.perf_counter() - start:
            stopped = f"time budget: stopped after {repeat + 1} of {plan.inflight_repeats} pairs"
            break
    overhead = median_ratio(rates["sft"], rates["inflight"]) - 1
    return {
        "shape": plan.inflight_shape,
        "dtype": "bfloat16",
        "tokens_per_row": plan.inflight_length,
        "batch_size": plan.inflight_batch,
        "steps": plan.inflight_steps,
        "steps_per_s": {name: statistics.median(values) for name, values in rates.items()},
        "runs": rates,
        "overhead": overhead,
        "peak_mib": {name: (p / 2**20 if p else None) for name, p in peaks.items()},
        "goal": {"goal": "in-flight <= 5% over SFTTrainer", "value": overhead, "met": overhead <= 0.05},
        "stopped_early": stopped,
    }


def qlora_step(ctx) -> dict:
    """A 4-bit base (NF4) with LoRA adapters: scores, two training steps, every adapter moved, scores again."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:
        raise Skip(f"bitsandbytes is not importable here ({type(error).__name__}: {error})") from error
    plan, device = ctx.plan, ctx.device
    gpu = device == "cuda"
    compute = torch.bfloat16 if gpu else torch.float32
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute)
    with tempfile.TemporaryDirectory() as folder:
        build_model(plan.qlora_shape, compute, "cpu").save_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=quantization, device_map={"": 0} if gpu else None
        )
    rows = make_rows(plan.qlora_rows, plan.qlora_length, SHAPES[plan.qlora_shape][2]["vocab_size"])
    args = ResonanceConfig(
        output_dir=tempfile.mkdtemp(prefix="gpu-check-qlora-"), report_to="none", use_cpu=not gpu, bf16=gpu,
        disable_tqdm=True, resonance_resume=False, resonance_batch_size=4, per_device_train_batch_size=4,
        max_steps=2, learning_rate=1e-3, save_strategy="no", logging_strategy="no",
    )  # fmt: skip
    dataset = Dataset.from_list(rows)
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer(),
        peft_config=LoraConfig(r=8, target_modules=["up_proj", "down_proj"], lora_dropout=0.0),
    )  # fmt: skip
    start = time.perf_counter()
    scored, peak = peak_memory(lambda: trainer.score(dataset), device)
    score_s = time.perf_counter() - start
    before = np.array(scored["resonance"])
    target = read_provenance(scored)["scoring"]["target"]
    adapters = {n: p.detach().float().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    trainer.train()
    now = dict(trainer.model.named_parameters())
    moved = [n for n in adapters if not torch.equal(adapters[n], now[n].detach().float())]
    after = np.array(trainer.score(dataset)["resonance"])
    checks = {
        "scored_target_is_lora": target == "lora",
        "scores_finite": bool(np.isfinite(before).all() and np.isfinite(after).all()),
        "every_adapter_moved": len(moved) == len(adapters) > 0,
        "scores_changed_by_training": not np.array_equal(before, after),
    }
    return {
        "shape": plan.qlora_shape,
        "compute_dtype": str(compute).replace("torch.", ""),
        "rows": len(rows),
        "tokens_per_row": plan.qlora_length,
        "score_samples_per_s": len(rows) / score_s,
        "score_peak_mib": peak / 2**20 if peak else None,
        "adapters_moved": f"{len(moved)}/{len(adapters)}",
        "checks": checks,
        "passed": all(checks.values()),
    }


def profile_step(ctx) -> dict:
    """One bf16 paper-exact scoring pass under torch.profiler, after a warm-up: the ops that take the time."""
    plan, device = ctx.plan, ctx.device
    batch_size = plan.batch_sizes[len(plan.batch_sizes) // 2]
    rows = make_rows(2 * batch_size, plan.length, SHAPES[plan.shape][2]["vocab_size"])
    dataset = Dataset.from_list(rows)
    trainer = score_trainer(build_model(plan.shape, torch.bfloat16, device), rows, device, batch_size)
    trainer.score(dataset)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        trainer.score(dataset)
        sync(device)
    averages = profiler.key_averages()
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    top = sorted(averages, key=lambda e: getattr(e, key), reverse=True)[:15]
    total = sum(getattr(e, key) for e in averages) or 1.0
    return {
        "shape": plan.shape,
        "batch_size": batch_size,
        "rows": len(rows),
        "sorted_by": key,
        "top_ops": [
            {"op": e.key, "calls": e.count, "self_ms": getattr(e, key) / 1e3, "share": getattr(e, key) / total}
            for e in top
        ],
        "table": averages.table(sort_by=key, row_limit=25),
    }
