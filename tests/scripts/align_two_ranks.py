"""Run under `torchrun --nproc_per_node 2`: alignment scores with a reference set whose rows the two ranks share
(an odd count, so the shares differ); each rank saves what it got, with the reference size it saw."""

import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer, read_provenance
from resofilter_hf.toy import make_math_problems


def main(model_dir: str, out_dir: str, optimizer: str) -> None:
    torch.set_num_threads(1)
    args = ResonanceConfig(
        output_dir=out_dir, report_to="none", use_cpu=True, disable_tqdm=True, resonance_batch_size=2,
        resonance_resume=False, resonance_optimizer=optimizer,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    dataset = make_math_problems(7, seed=5, flaw_rate=0.5)
    trainer = ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=AutoTokenizer.from_pretrained(model_dir)
    )
    scored = trainer.score(reference=make_math_problems(5, seed=11, flaw_rate=0.0))
    rank = trainer.accelerator.process_index
    out = {
        "world_size": trainer.accelerator.num_processes,
        "alignment": list(scored["resonance_alignment"]),
        "n_used": read_provenance(scored)["scoring"]["reference"]["n_used"],
    }
    with open(os.path.join(out_dir, f"alignment_rank{rank}.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
