"""Scoring an MoE model's default targets: what the exact per-sample expert gradients cost.

    python bench/bench_moe_targets.py            # CPU: a Qwen2-MoE shape, 8 experts (top 2) + a shared expert

The default targets of an MoE layer are its fused 3-D expert up-projection (per-sample gradients by one autograd
pass per sample) and its shared expert's up_proj (hooks). Runs, interleaved, on the same model and rows: the
literal loop on the default targets (batch size 1, real AdamW step), the engine on the default targets, and the
engine on the shared experts alone (hooks only: the price without the 3-D tensors). Prints samples/s and median
ratios of paired runs, and writes JSON to bench/results/.
"""

import argparse
import statistics

import torch
from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from resofilter_hf.engine.deltas import ScoreSpec, StepTransform
from resofilter_hf.engine.oracle import TensorPart, literal_loop_scores
from resofilter_hf.engine.scorer import ResonanceScorer
from resofilter_hf.engine.targets import find_targets

from _common import interleaved_rates, machine, median_ratio, write_result
from bench_scoring import make_rows


SHAPE = dict(
    hidden_size=256, intermediate_size=1024, moe_intermediate_size=256, shared_expert_intermediate_size=512,
    num_experts=8, num_experts_per_tok=2, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
    vocab_size=16000, max_position_embeddings=4096,
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=128, help="tokens per row")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--oracle-rows", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (recorded)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Qwen2MoeForCausalLM(Qwen2MoeConfig(**SHAPE)).eval()
    rows = make_rows(args.rows, args.length, SHAPE["vocab_size"])
    ids = list(range(args.rows))
    collator = DataCollatorForLanguageModeling(pad_token_id=0)
    spec = ScoreSpec(transform=StepTransform("adamw"))

    def engine(modules):
        targets = find_targets(model, modules, 3, "weights")
        return targets, ResonanceScorer(
            model, targets, spec, collator, batch_size=args.batch_size, show_progress=False
        )

    default_targets, default = engine(None)
    shared_targets, shared = engine(["mlp.shared_expert.up_proj"])
    default.score(rows[: args.batch_size], ids[: args.batch_size])  # warm-up
    parts = [TensorPart(t.tensor_name, (Ellipsis, t.rows or slice(None), slice(None))) for t in default_targets]
    oracle_rows = rows[: args.oracle_rows]
    runs = interleaved_rates(
        {
            "oracle": (lambda: literal_loop_scores(model, oracle_rows, parts), len(oracle_rows)),
            "engine_default": (lambda: default.score(rows, ids), args.rows),
            "engine_shared_only": (lambda: shared.score(rows, ids), args.rows),
        },
        args.repeats,
        "cpu",
    )
    rates = {name: statistics.median(values) for name, values in runs.items()}
    over_oracle = median_ratio(runs["engine_default"], runs["oracle"])
    over_shared = median_ratio(runs["engine_default"], runs["engine_shared_only"])
    payload = {
        "machine": machine(args.threads, "cpu"),
        "shape": {"model": "qwen2_moe", **SHAPE},
        "tokens_per_row": args.length,
        "rows": args.rows,
        "batch_size": args.batch_size,
        "scored_default": [t.describe() for t in default_targets],
        "scored_shared_only": [t.tensor_name for t in shared_targets],
        "samples_per_s": rates,
        "runs": runs,
        "default_over_oracle": over_oracle,
        "default_over_shared_only": over_shared,
    }
    path = write_result("moe-targets", payload)
    print(f"qwen2_moe shape on cpu, {args.threads} torch thread(s), {args.length}-token rows, batch {args.batch_size}")
    print(f"  oracle              {rates['oracle']:8.2f} samples/s (batch size 1, default targets)")
    print(f"  engine, default     {rates['engine_default']:8.2f} samples/s = {over_oracle:.2f}x the oracle")
    print(f"  engine, shared only {rates['engine_shared_only']:8.2f} samples/s (default = {over_shared:.2f}x this)")
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
