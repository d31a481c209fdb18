"""Run under `torchrun --nproc_per_node 2`: in-flight scoring during DDP training; rank 0 saves the result."""

import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.toy import make_math_problems


def main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dataset = make_math_problems(11, seed=13, flaw_rate=0.5)  # 11 rows: the sampler pads the last batch
    args = ResonanceConfig(
        output_dir=out_dir,
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        per_device_train_batch_size=2,
        num_train_epochs=2,
        learning_rate=0.0,  # every step sees the initial state: in-flight == score() on it
        save_strategy="no",
        resonance_when="inflight",
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    )
    trained_here = []  # the rows this process trained (before the results are gathered)
    record_batch = trainer._resonance_recorder.record_batch

    def spy(ids, *args, **kwargs):
        trained_here.extend(ids.tolist())
        return record_batch(ids, *args, **kwargs)

    trainer._resonance_recorder.record_batch = spy
    trainer.train()
    rank = trainer.accelerator.process_index
    trainer.scored_dataset.to_parquet(os.path.join(out_dir, f"trained_rank{rank}.parquet"))
    with open(os.path.join(out_dir, f"world_rank{rank}.json"), "w") as f:
        json.dump({"world_size": trainer.accelerator.num_processes, "trained": trained_here}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
