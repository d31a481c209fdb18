"""Training overhead of in-flight scoring: plain SFTTrainer vs ResonanceTrainer(resonance_when="inflight").

    python bench/bench_inflight.py                      # CPU: 12-layer Llama shape, 128-token rows
    python bench/bench_inflight.py --device cuda --shape qwen2.5-0.5b --dtype bfloat16 --length 512
    python bench/bench_inflight.py --model smollm2 --length 512 --batch-size 4 --steps 6   # real model, GSM8K rows

Same model weights, same rows, same seed; the two trainers alternate `--repeats` times; the overhead is the
median over those back-to-back pairs of the ratio of their times per step. Writes JSON to bench/results/.
With ``--model DIR`` (``smollm2``: bench/lab/smollm2.py) the model is that folder and the rows GSM8K train
solutions as chat rows (``--gsm8k-dir``, default the vendored sample), prepared by TRL, cut at ``--length``.
"""

import argparse
import os
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.toy import cached_tiny_model

from _common import machine, median_ratio, sync, write_result
from bench_scoring import SHAPES, build_model, make_rows


def run(cls, config_cls, shape, dtype, device, dataset, tokenizer, steps, batch_size, extra) -> float:
    """Steps/s of `cls` training `steps` steps; `shape`: a `SHAPES` key (random weights) or a model folder."""
    if shape in SHAPES:
        model = build_model(shape, dtype, device)
    else:
        model = AutoModelForCausalLM.from_pretrained(shape, dtype=dtype).to(device)
    with tempfile.TemporaryDirectory() as out:
        args = config_cls(
            output_dir=out, report_to="none", max_steps=steps, per_device_train_batch_size=batch_size,
            learning_rate=1e-5, save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0,
            use_cpu=device == "cpu", bf16=dtype == torch.bfloat16, gradient_checkpointing=False,
            dataloader_num_workers=0, **extra,
        )  # fmt: skip
        trainer = cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
        sync(device)
        start = time.perf_counter()
        trainer.train()
        sync(device)
        return steps / (time.perf_counter() - start)


def real_rows(args):
    """(model name, model folder, GSM8K chat rows for `args.steps` batches, its tokenizer) for ``--model``."""
    from pathlib import Path

    from resofilter_hf.evaluation.gsm8k import load_gsm8k

    from lab.gsm8k_real import chat_rows
    from lab.smollm2 import resolve_model

    model_dir, model_name = resolve_model(args.model)
    gsm8k = args.gsm8k_dir or os.environ.get("RESOFILTER_GSM8K_DIR") or Path(__file__).parents[1] / "tests/data/gsm8k"
    train = load_gsm8k("train", path=gsm8k).select(range(args.steps * args.batch_size))
    return (
        model_name,
        model_dir,
        chat_rows(train["question"], train["answer"]),
        AutoTokenizer.from_pretrained(model_dir),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="cpu-llama-12l", choices=sorted(SHAPES))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None, help="a model folder, or 'smollm2': real model, GSM8K chat rows")
    parser.add_argument("--gsm8k-dir", default=None, help="with --model: GSM8K jsonl folder (default: the sample)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model_name = args.shape
    if args.model:
        model_name, args.shape, dataset, tokenizer = real_rows(args)
    else:
        rows = make_rows(args.steps * args.batch_size, args.length, SHAPES[args.shape][2]["vocab_size"])
        dataset = Dataset.from_list(rows)  # pre-tokenized: TRL skips tokenization, the tokenizer only pads
        tokenizer = AutoTokenizer.from_pretrained(cached_tiny_model())

    length = {"max_length": args.length} if args.model else {}  # chat rows: TRL cuts them
    runners = {
        "sft": (SFTTrainer, SFTConfig, length),
        "inflight": (
            ResonanceTrainer,
            ResonanceConfig,
            {"resonance_when": "inflight", "resonance_resume": False, **length},
        ),
    }
    rates = {name: [] for name in runners}
    run(
        SFTTrainer, SFTConfig, args.shape, dtype, args.device, dataset, tokenizer, 2, args.batch_size, length
    )  # warm-up
    for _ in range(args.repeats):
        for name, (cls, config_cls, extra) in runners.items():
            rate = run(cls, config_cls, args.shape, dtype, args.device, dataset, tokenizer, args.steps,
                       args.batch_size, extra)  # fmt: skip
            rates[name].append(rate)
    median = {name: statistics.median(values) for name, values in rates.items()}
    overhead = median_ratio(rates["sft"], rates["inflight"]) - 1  # time per step, paired back-to-back runs
    payload = {
        "machine": machine(args.threads, args.device),
        "load_average": os.getloadavg(),
        "shape": model_name,
        "dtype": args.dtype,
        "tokens_per_row": args.length,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "steps_per_s": median,
        "runs": rates,
        "inflight_overhead": overhead,
    }
    path = write_result("inflight" + (f"-{model_name.lower()}" if args.model else ""), payload)
    print(f"{model_name} {args.dtype} on {args.device}, {args.threads} torch thread(s), batch {args.batch_size}")
    print(f"  SFTTrainer                 {median['sft']:.3f} steps/s")
    print(f"  ResonanceTrainer(inflight) {median['inflight']:.3f} steps/s  -> overhead {100 * overhead:+.1f}%")
    spread = [100 * (a / b - 1) for a, b in zip(rates["sft"], rates["inflight"])]
    print(f"  per-pair overheads: {', '.join(f'{x:+.1f}%' for x in spread)} (median of these above)")
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
