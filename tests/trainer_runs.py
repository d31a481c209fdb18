"""Helpers shared by the trainer tests: build an `SFTTrainer` or a `ResonanceTrainer` the same way, read its run."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


COMMON = dict(
    report_to="none",
    use_cpu=True,
    bf16=False,
    disable_tqdm=True,
    per_device_train_batch_size=3,
    logging_steps=1,
    save_strategy="no",
    seed=11,
)


def build(
    cls, config_cls, model_dir, dataset, out, dtype=torch.float32, peft_config=None, eval_dataset=None, **kwargs
):
    """`cls(...)` on a fresh copy of the model in `model_dir`, with `config_cls(out, **COMMON, **kwargs)`."""
    args = config_cls(output_dir=str(out), **{**COMMON, **kwargs})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return cls(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def losses(trainer) -> list[float]:
    """The training loss at every logged step."""
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]
