"""Scoring speed: the literal loop (oracle) vs the batched engine vs a no-grad forward, same model, same rows.

    python bench/bench_scoring.py                       # CPU: 12-layer Llama shape, 128-token rows
    python bench/bench_scoring.py --device cuda --shape gemma-2-2b --dtype bfloat16   # the paper's GPU shape
    python bench/bench_scoring.py --model smollm2 --threads 2        # a real model on real GSM8K chat rows

Prints samples/s and the ratios, the coefficient of variation of the score under each transform, and writes
JSON to bench/results/. Random weights (speed does not depend on them); rows are random token ids whose second
three quarters are loss tokens.

With ``--model DIR`` (``smollm2``: SmolLM2-135M-Instruct from bench/lab/smollm2.py) the model is that folder in
float32 and the rows are GSM8K train solutions as chat rows (``--gsm8k-dir``, default the vendored sample), and the
tasks are the user's calls: `ResonanceTrainer.score()` (TRL's preparation included), the literal loop on the rows
it prepares, a no-grad forward and a full fine-tuning step (AdamW) over the same batches; interleaved, each with
the process's peak RSS during it; ratios are medians of per-round ratios.
"""

import argparse
import statistics

import numpy as np
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from resofilter_hf.engine.deltas import ScoreSpec, StepTransform
from resofilter_hf.engine.oracle import literal_loop_scores
from resofilter_hf.engine.scorer import ResonanceScorer
from resofilter_hf.engine.targets import find_targets

from _common import interleaved_rates, machine, median_ratio, write_result


SHAPES = {
    # CPU default: 12 layers, the last 3 scored; Llama-2's 32k vocabulary makes the LM head 1.7x the layers' FLOPs
    "cpu-llama-12l": (LlamaConfig, LlamaForCausalLM, dict(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=12, num_attention_heads=8,
        num_key_value_heads=4, vocab_size=32000)),
    # deeper: 24 layers, the last 3 scored (the backward covers an eighth of the model)
    "cpu-llama-24l": (LlamaConfig, LlamaForCausalLM, dict(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=24, num_attention_heads=8,
        num_key_value_heads=4, vocab_size=32000)),
    # the same, with gemma-2-2b's balance of LM head to layers (head FLOPs / layer FLOPs ~ 0.7, here 0.67)
    "cpu-llama-12l-v12k": (LlamaConfig, LlamaForCausalLM, dict(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=12, num_attention_heads=8,
        num_key_value_heads=4, vocab_size=12288)),
    "gemma-2-2b": (Gemma2Config, Gemma2ForCausalLM, dict(
        hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
        num_key_value_heads=4, head_dim=256, vocab_size=256000, final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0, query_pre_attn_scalar=256, sliding_window=4096)),
    "qwen2.5-0.5b": (Qwen2Config, Qwen2ForCausalLM, dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)),
    # SmolLM2-135M-Instruct's shape (the real model of the CPU figures, bench/lab/smollm2.py), random weights
    "smollm2-135m": (LlamaConfig, LlamaForCausalLM, dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0)),
}  # fmt: skip
# The GPU shapes at toy size (same architecture and options), for CPU smoke runs of bench/gpu_check.py
TOY_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024)  # fmt: skip
TOY_OF = {
    "smoke-gemma-2": ("gemma-2-2b", dict(head_dim=16, query_pre_attn_scalar=16)),
    "smoke-qwen2.5": ("qwen2.5-0.5b", {}),
    "smoke-smollm2": ("smollm2-135m", {"hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 2}),
}
SHAPES.update(
    {toy: (*SHAPES[big][:2], {**SHAPES[big][2], **TOY_SIZES, **extra}) for toy, (big, extra) in TOY_OF.items()}
)


def build_model(shape: str, dtype: torch.dtype, device: str):
    config_cls, model_cls, kwargs = SHAPES[shape]
    torch.manual_seed(0)
    config = config_cls(max_position_embeddings=4096, **kwargs)
    # SDPA where the architecture has it; Gemma-2 (soft-capped attention) runs eager in transformers
    config._attn_implementation = "sdpa" if getattr(model_cls, "_supports_sdpa", False) else "eager"
    with torch.device(device):
        model = model_cls(config).to(dtype)
    return model.eval()


def make_rows(n: int, length: int, vocab: int, seed: int = 0, min_length: int | None = None) -> list[dict]:
    """Random token ids, `length` each (or uneven, between `min_length` and `length`), the first quarter masked."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        if min_length is not None:
            length = int(torch.randint(min_length, length + 1, (1,), generator=gen))
        ids = torch.randint(3, vocab, (length,), generator=gen).tolist()
        labels = [-100] * (length // 4) + ids[length // 4 :]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def forward_only(model, collator, rows: list[dict], batch_size: int) -> None:
    """The floor: a no-grad forward over `rows` in batches, logits and all."""
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collator(rows[start : start + batch_size])
            model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))


def train_steps(model, optimizer, collator, rows: list[dict], batch_size: int) -> None:
    """Plain full fine-tuning steps (forward, backward, AdamW) over `rows`: the cost scoring is held against."""
    device = next(model.parameters()).device
    model.train()
    try:
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collator(rows[start : start + batch_size]).items()}
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    finally:
        optimizer.zero_grad(set_to_none=True)  # no gradients left behind by an out-of-memory error


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def real_model_run(args) -> None:
    """The ``--model`` tasks (see the module docstring): rates, ratios and peak RSS, written as JSON."""
    import os
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from resofilter_hf import ResonanceConfig, ResonanceTrainer
    from resofilter_hf.engine.rows import ROW_ID
    from resofilter_hf.evaluation.gsm8k import load_gsm8k

    from _common import peak_memory
    from lab.gsm8k_real import chat_rows
    from lab.smollm2 import resolve_model

    model_dir, model_name = resolve_model(args.model)
    gsm8k = args.gsm8k_dir or os.environ.get("RESOFILTER_GSM8K_DIR") or Path(__file__).parents[1] / "tests/data/gsm8k"
    n_rows, batch_size = args.rows or 16, args.batch_size or 8
    train = load_gsm8k("train", path=gsm8k).select(range(n_rows))
    dataset = chat_rows(train["question"], train["answer"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    options = dict(report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, resonance_resume=False)
    config = ResonanceConfig(
        "/tmp/bench-scoring-real", max_length=args.length or 512, resonance_batch_size=batch_size, **options
    )
    trainer = ResonanceTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(n_rows))))
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in sorted(prepared, key=lambda r: r[ROW_ID])]
    collator, names = trainer.scoring_collator(), [t.name + ".weight" for t in trainer.resonance_targets]
    trained = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-5)
    oracle_rows = rows[: args.oracle_rows]
    peaks: dict[str, int] = {}

    def measured(name, fn):
        def call():
            _, peak = peak_memory(fn, "cpu")
            peaks[name] = max(peaks.get(name, 0), peak or 0)

        return call

    tasks = {
        "loop": (measured("loop", lambda: literal_loop_scores(model, oracle_rows, names)), len(oracle_rows)),
        "engine": (measured("engine", lambda: trainer.score(dataset)), n_rows),
        "forward": (measured("forward", lambda: forward_only(model, collator, rows, batch_size)), n_rows),
        "train": (measured("train", lambda: train_steps(trained, optimizer, collator, rows, batch_size)), n_rows),
    }
    scored = trainer.score(dataset)  # warm-up (and the scores, for their spread)
    train_steps(trained, optimizer, collator, rows[:batch_size], batch_size)
    resident = _rss_mib()  # both models, the optimizer's state, the tokenizer: held through every task
    runs = interleaved_rates(tasks, args.repeats, "cpu")
    scores = np.asarray(scored["resonance"], dtype=np.float64)
    payload = {
        "machine": machine(args.threads, "cpu"),
        "load_average": os.getloadavg(),
        "model": model_name,
        "model_dir": model_dir,
        "dtype": "float32",
        "rows": n_rows,
        "tokens_per_row": [len(r["input_ids"]) for r in rows],
        "loss_tokens_per_row": list(scored["resonance_tokens"]),
        "batch_size": batch_size,
        "loop_rows": len(oracle_rows),
        "samples_per_s": {name: statistics.median(values) for name, values in runs.items()},
        "runs": runs,
        "over_loop": {name: median_ratio(runs[name], runs["loop"]) for name in runs if name != "loop"},
        "over_forward": {name: median_ratio(runs[name], runs["forward"]) for name in runs if name != "forward"},
        "resident_rss_mib": resident,
        "peak_rss_mib": {name: peak / 2**20 for name, peak in peaks.items()},
        "peak_above_resident_mib": {name: peak / 2**20 - resident for name, peak in peaks.items()},
        "score_cv": float(scores.std() / scores.mean()),
    }
    path = write_result(f"scoring-{model_name.lower()}", payload)
    print(f"{model_name} float32 on CPU, {args.threads} torch thread(s), {n_rows} GSM8K chat rows, batch {batch_size}")
    for name, rate in payload["samples_per_s"].items():
        ratios = f"x loop {payload['over_loop'].get(name, 1.0):6.2f}  x forward {payload['over_forward'].get(name, 1.0):5.2f}"
        extra = payload["peak_above_resident_mib"][name]
        print(f"  {name:8s} {rate:7.3f} rows/s  {ratios}  peak RSS +{extra:5.0f} MiB over {resident:.0f} MiB resident")
    print(f"  -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="cpu-llama-12l", choices=sorted(SHAPES))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--length", type=int, default=None, help="tokens per row (CPU 128, GPU 512)")
    parser.add_argument("--rows", type=int, default=None, help="rows for the engine and forward (CPU 32, GPU 64)")
    parser.add_argument("--oracle-rows", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None, help="CPU 8, GPU 16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (recorded)")
    parser.add_argument("--model", default=None, help="a model folder, or 'smollm2': real model, GSM8K chat rows")
    parser.add_argument("--gsm8k-dir", default=None, help="with --model: GSM8K jsonl folder (default: the sample)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.model:
        return real_model_run(args)
    gpu = args.device.startswith("cuda")
    length = args.length or (512 if gpu else 128)
    n_rows = args.rows or (64 if gpu else 32)
    batch_size = args.batch_size or (16 if gpu else 8)
    dtype = getattr(torch, args.dtype)
    model = build_model(args.shape, dtype, args.device)
    vocab = model.config.vocab_size
    rows = make_rows(n_rows, length, vocab)
    ids = list(range(n_rows))
    collator = DataCollatorForLanguageModeling(pad_token_id=0)
    targets = find_targets(model, ["mlp.up_proj"], 3, "weights")

    def engine(transform: StepTransform, anatomy: bool = False) -> ResonanceScorer:
        spec = ScoreSpec(transform=transform, anatomy=anatomy)
        return ResonanceScorer(model, targets, spec, collator, batch_size=batch_size, show_progress=False)

    paper = engine(StepTransform("adamw"))
    paper.score(rows[:batch_size], ids[:batch_size])  # warm-up

    forward_only(model, collator, rows, batch_size)
    # The paper's loop: fp32, batch size 1, full fine-tuning step, whatever dtype the engine ran in.
    oracle_model = model if dtype == torch.float32 else build_model(args.shape, torch.float32, args.device)
    oracle_rows = rows[: args.oracle_rows]
    names = [t.name + ".weight" for t in targets]
    runs = interleaved_rates(
        {
            "oracle": (lambda: literal_loop_scores(oracle_model, oracle_rows, names), len(oracle_rows)),
            "engine": (lambda: paper.score(rows, ids), n_rows),
            "forward": (lambda: forward_only(model, collator, rows, batch_size), n_rows),
        },
        args.repeats,
        args.device,
    )
    rates = {name: statistics.median(values) for name, values in runs.items()}
    over_oracle = median_ratio(runs["engine"], runs["oracle"])
    over_forward = median_ratio(runs["engine"], runs["forward"])
    oracle_rate, engine_rate, forward_rate = rates["oracle"], rates["engine"], rates["forward"]

    # How much the score varies across samples under each transform (the fresh-AdamW score barely does).
    variation = {}
    transforms = {
        "adamw (paper)": StepTransform("adamw"),
        "sgd": StepTransform("sgd"),
        "adamw_state": StepTransform("adamw_state"),
    }
    for name, transform in transforms.items():
        results = engine(transform, anatomy=name == "sgd").score(rows, ids)
        scores = [results[i]["score"] for i in ids]
        variation[name] = statistics.pstdev(scores) / statistics.fmean(scores)
        if name == "sgd":
            norms = [results[i]["grad_norm"] for i in ids]
            variation["grad_norm"] = statistics.pstdev(norms) / statistics.fmean(norms)

    payload = {
        "machine": machine(args.threads, args.device),
        "shape": args.shape,
        "dtype": args.dtype,
        "tokens_per_row": length,
        "rows": n_rows,
        "batch_size": batch_size,
        "scored": [t.name for t in targets],
        "samples_per_s": rates,
        "runs": runs,
        "engine_over_oracle": over_oracle,
        "engine_over_forward": over_forward,
        "coefficient_of_variation": variation,
    }
    path = write_result("scoring", payload)
    print(f"{args.shape} {args.dtype} on {args.device}, {args.threads} torch thread(s), {length}-token rows")
    print(f"  oracle   {oracle_rate:8.2f} samples/s (fp32, batch size 1)")
    print(f"  engine   {engine_rate:8.2f} samples/s  = {over_oracle:.1f}x the oracle (median of paired runs)")
    print(f"  forward  {forward_rate:8.2f} samples/s  (engine = {over_forward:.2f}x the forward)")
    print("  coefficient of variation of the score across samples:")
    for name, cv in variation.items():
        print(f"    {name:14s} {cv:.2e}")
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
