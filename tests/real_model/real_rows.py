"""What the real-model tests share: GSM8K chat rows from the vendored sample, trainers built as users build them, and
the independent references (the literal loop, per-row autograd with a real optimizer step)."""

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.oracle import literal_loop_scores
from resofilter_hf.engine.rows import ROW_ID
from resofilter_hf.evaluation.gsm8k import load_gsm8k

from lab.gsm8k_real import chat_rows


GSM8K_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "gsm8k"
MAX_LENGTH = 96  # the shortest sample rows are 118-160 tokens under SmolLM2's template: most are cut, all score
QUIET = dict(report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, resonance_resume=False)


def gsm8k_chat(n: int) -> Dataset:
    """The `n` shortest GSM8K train rows of the vendored sample (question + answer characters), in file order,
    as conversational prompt/completion rows (a user turn, an assistant turn)."""
    train = load_gsm8k("train", path=GSM8K_SAMPLE)
    sizes = [len(q) + len(a) for q, a in zip(train["question"], train["answer"])]
    chosen = sorted(sorted(range(len(sizes)), key=lambda i: (sizes[i], i))[:n])
    rows = train.select(chosen)
    return chat_rows(rows["question"], rows["answer"])


def scoring_trainer(model, tokenizer, dataset, out, peft_config=None, **options) -> ResonanceTrainer:
    """A ResonanceTrainer as a user builds one to score `dataset` (max_length `MAX_LENGTH` unless given)."""
    args = ResonanceConfig(output_dir=str(out), **{**QUIET, "max_length": MAX_LENGTH, **options})
    return ResonanceTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )


def prepared_rows(trainer, dataset) -> list[dict]:
    """The tokenized rows `score()` sees ({"input_ids", "labels"}), in input order, from the trainer's own
    preparation (TRL's chat template, completion mask and truncation)."""
    prepared = trainer.prepare_scoring_dataset(dataset.add_column(ROW_ID, list(range(len(dataset)))))
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in sorted(prepared, key=lambda r: r[ROW_ID])]


@contextlib.contextmanager
def trainable_only(model, params):
    """Only `params` require grad inside the block. A fresh AdamW step on a tensor depends on that tensor's
    gradient alone, so the literal loop gives the same deltas for them while its backward stops at the lowest."""
    flags = {p: p.requires_grad for p in model.parameters()}
    keep = {id(p) for p in params}
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
        yield
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)


def literal_scores(trainer, dataset, names: list[str]) -> np.ndarray:
    """`engine.oracle.literal_loop_scores` over the parameters `names` (every other one frozen) on the rows
    `score()` sees."""
    params = dict(trainer.model.named_parameters())
    with trainable_only(trainer.model, [params[n] for n in names]):
        return np.array(literal_loop_scores(trainer.model, prepared_rows(trainer, dataset), names))


def row_loss(model, row: dict) -> torch.Tensor:
    """A row's mean loss over its loss tokens, from the model's full logits (batch size 1)."""
    logits = model(input_ids=torch.tensor([row["input_ids"]]), use_cache=False).logits[0, :-1]
    return F.cross_entropy(logits, torch.tensor(row["labels"])[1:], ignore_index=-100)


def lora_modules(model) -> list:
    """The LoRA-wrapped modules (peft's `lora_A`/`lora_B`/`scaling` of adapter "default"), in model order."""
    return [m for m in model.modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})]


def literal_effective_lora_scores(model, rows: list[dict]) -> np.ndarray:
    """Per row: reload the adapters, one real fresh `torch.optim.AdamW` step (lr 1e-5, wd 0.01) on its loss, and
    the mean |change| of each merged weight s * B A (s * (B'A' - BA)), averaged over the LoRA modules."""
    modules = lora_modules(model)
    factors = [(m.lora_A["default"].weight, m.lora_B["default"].weight, m.scaling["default"]) for m in modules]
    start = [(a.detach().clone(), b.detach().clone()) for a, b, _ in factors]
    adapters = [p for a, b, _ in factors for p in (a, b)]
    scores = []
    model.eval()
    with trainable_only(model, adapters):
        for row in rows:
            with torch.no_grad():
                for (a, b, _), (a0, b0) in zip(factors, start):
                    a.copy_(a0), b.copy_(b0)
            optimizer = torch.optim.AdamW(adapters, lr=1e-5, weight_decay=0.01, eps=1e-8)
            row_loss(model, row).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                per_module = [
                    (s * (b @ a - b0 @ a0)).abs().mean().item() for (a, b, s), (a0, b0) in zip(factors, start)
                ]
            scores.append(float(np.mean(per_module)))
    with torch.no_grad():
        for (a, b, _), (a0, b0) in zip(factors, start):
            a.copy_(a0), b.copy_(b0)
    return np.array(scores)


def rel_err(got, ref) -> float:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(got - ref) / np.abs(ref)))
