"""Scoring speed: the literal loop (oracle) vs the batched engine vs a no-grad forward, same model, same rows.

    python bench/bench_scoring.py                       # CPU: 12-layer Llama shape, 128-token rows
    python bench/bench_scoring.py --device cuda --shape gemma-2-2b --dtype bfloat16   # the paper's GPU shape

Prints samples/s and the ratios, the coefficient of variation of the score under each transform, and writes
JSON to bench/results/. Random weights (speed does not depend on them); rows are random token ids whose second
three quarters are loss tokens.
"""

import argparse
import statistics

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
}  # fmt: skip
# The two GPU shapes at toy size (same architecture and options), for CPU smoke runs of bench/gpu_check.py
TOY_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024)  # fmt: skip
TOY_OF = {
    "smoke-gemma-2": ("gemma-2-2b", dict(head_dim=16, query_pre_attn_scalar=16)),
    "smoke-qwen2.5": ("qwen2.5-0.5b", {}),
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
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
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
