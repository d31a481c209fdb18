"""Run under torchrun with two processes (one node or two): every rank scores its share of a dataset and of the
same rows as a stream; each saves the result it got back."""

import json
import os
import sys

import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.toy import make_math_problems


def main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dataset = make_math_problems(11, seed=12, flaw_rate=0.5)
    args = ResonanceConfig(
        output_dir=out_dir,
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        resonance_batch_size=3,
        resonance_resume=True,  # each shard's marker names the process that wrote it: the test checks the split
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    )
    scored = trainer.score()
    rank = trainer.accelerator.process_index
    scored.to_parquet(os.path.join(out_dir, f"scored_rank{rank}.parquet"))
    source = os.path.join(out_dir, "source.parquet")
    if rank == 0:
        dataset.to_parquet(source)
    trainer.accelerator.wait_for_everyone()
    stream = load_dataset("parquet", data_files=source, split="train", streaming=True)
    streamed = list(trainer.score(stream, parts_dir=os.path.join(out_dir, "parts")))
    with open(os.path.join(out_dir, f"streamed_rank{rank}.json"), "w") as f:
        json.dump([row["resonance"] for row in streamed], f)
    if rank == 0:
        with open(os.path.join(out_dir, "world.json"), "w") as f:
            json.dump({"world_size": trainer.accelerator.num_processes, "env": int(os.environ["WORLD_SIZE"])}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
