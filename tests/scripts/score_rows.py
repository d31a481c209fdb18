"""Score N toy rows (float64, batches of 2, resume on) into OUT: a run the kill -9 and two-writer tests interrupt.
A 4th argument, SECONDS, makes each forward pass sleep that long, so a run lasts while another process starts."""

import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.toy import make_math_problems


def main(model_dir: str, out_dir: str, n: str, seconds: str = "0") -> None:
    torch.set_num_threads(1)
    dataset = make_math_problems(int(n), seed=11, flaw_rate=0.5)
    args = ResonanceConfig(
        output_dir=out_dir, report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, resonance_batch_size=2
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    )
    if float(seconds):
        model.get_input_embeddings().register_forward_hook(lambda *_: time.sleep(float(seconds)))
    trainer.score()


if __name__ == "__main__":
    main(*sys.argv[1:5])
