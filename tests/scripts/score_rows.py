"""Score N toy rows (float64, batches of 2, resume on) into OUT: a run the kill -9 test interrupts."""

import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.toy import make_math_problems


def main(model_dir: str, out_dir: str, n: str) -> None:
    torch.set_num_threads(1)
    dataset = make_math_problems(int(n), seed=11, flaw_rate=0.5)
    args = ResonanceConfig(
        output_dir=out_dir, report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, resonance_batch_size=2
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    )
    trainer.score()


if __name__ == "__main__":
    main(*sys.argv[1:4])
