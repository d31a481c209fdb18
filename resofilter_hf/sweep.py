"""Short proxy trainings that show what a selection buys: held-out loss and final-answer accuracy per keep share.

One code path trains (`train_proxy`: a `ResonanceTrainer` with scoring off, i.e. TRL's `SFTTrainer`, from a saved
base model), one evaluates (`evaluate_proxy`: forward-only held-out loss through the trainer's own preparation, and
greedy generation scored with `final_answer_accuracy`), and `keep_ratio_sweep` runs them over keep shares so the
share p is chosen rather than guessed. The story and the benchmarks reuse these pieces; `plots.plot_sweep` draws
the table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from .engine.rows import ROW_ID
from .evaluation import final_answer_accuracy
from .provenance import read_provenance
from .schemas import trl_view
from .selection import select_by_resonance


INPUT_COLUMNS = ("prompt", "completion", "messages")


@dataclass(frozen=True)
class ProxySettings:
    """How a proxy model is trained from the base and evaluated. `max_steps > 0` overrides `epochs`."""

    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    learning_rate: float = 3e-3
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_length: int = 256
    max_new_tokens: int = 160
    eval_batch_size: int = 64
    show_progress: bool = False  # tqdm bars while training
    use_cpu: bool | None = None  # None: the CPU only when there is no accelerator


# ---- training --------------------------------------------------------------------------------------------------


def proxy_trainer(
    model_dir: str | Path,
    train_dataset: Dataset,
    settings: ProxySettings,
    *,
    seed: int,
    output_dir: str | Path,
):
    """A `ResonanceTrainer` (scoring off: training is exactly TRL's `SFTTrainer`) over the model saved in
    `model_dir` and the prompt/completion or messages columns of `train_dataset`, not yet trained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from .config import ResonanceConfig
    from .trainer import ResonanceTrainer

    train_dataset = trl_view(train_dataset)  # a question/answer selection trains on what TRL read
    columns = [c for c in INPUT_COLUMNS if c in train_dataset.column_names]
    if not columns:
        raise ValueError(
            f"train_proxy: the train dataset needs prompt/completion or messages columns, has {train_dataset.column_names}"
        )
    if len(train_dataset) == 0:
        raise ValueError("train_proxy: the train dataset is empty")
    args = ResonanceConfig(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        max_length=settings.max_length,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        use_cpu=settings.use_cpu if settings.use_cpu is not None else not torch.accelerator.is_available(),
        bf16=False,
        dataloader_num_workers=0,
        seed=seed,
        data_seed=seed,
        disable_tqdm=not settings.show_progress,
        resonance_resume=False,
        resonance_batch_size=settings.eval_batch_size,
    )
    trainer = ResonanceTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=args,
        train_dataset=train_dataset.select_columns(columns),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    if settings.show_progress:  # the bar, without the metric dict transformers writes under it at every log
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_bar_only_callback())
    else:  # with tqdm off, transformers prints every log dict instead
        trainer.remove_callback(PrinterCallback)
    return trainer


def _bar_only_callback():
    """transformers' `ProgressCallback` minus its `on_log`, which writes each log dict below the bar: the lab's
    tables report the losses, and a progress line per step is all a reader of the log needs. One bar at a time:
    it is erased when its training ends, and drawn only on a terminal (a log file gets no bar refreshes)."""
    from tqdm.auto import tqdm
    from transformers.trainer_callback import ProgressCallback

    class BarOnly(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, leave=False, disable=None)
            self.current_step = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    return BarOnly()


def train_proxy(
    model_dir: str | Path,
    train_dataset: Dataset,
    settings: ProxySettings,
    *,
    seed: int,
    output_dir: str | Path,
):
    """Fine-tune the model saved in `model_dir` on `train_dataset`; return the trained `proxy_trainer`."""
    trainer = proxy_trainer(model_dir, train_dataset, settings, seed=seed, output_dir=output_dir)
    trainer.train()
    return trainer


def save_proxy(trainer, path: str | Path) -> Path:
    """Model and tokenizer of a trained proxy, loadable with the Auto classes (no pickled training arguments)."""
    path = Path(path)
    trainer.model.save_pretrained(path)
    trainer.processing_class.save_pretrained(path)
    return path


# ---- evaluation ------------------------------------------------------------------------------------------------


def generate_answers(
    model, tokenizer, prompts: Sequence[str | list[dict]], max_new_tokens: int, batch_size: int = 64
) -> list[str]:
    """Greedy completions of `prompts`, as text without special tokens, in input order.

    String prompts are tokenized as TRL tokenizes a prompt (the tokenizer's own special tokens, e.g. BOS);
    conversational prompts (lists of role/content dicts) through the chat template with the generation prompt.
    Batches are left-padded and sorted by length; generation stops at EOS or after `max_new_tokens`.
    """
    encoded = []
    for prompt in prompts:
        if isinstance(prompt, str):
            encoded.append(tokenizer(prompt)["input_ids"])
        else:
            encoded.append(
                tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)[
                    "input_ids"
                ]
            )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda k: -len(encoded[k]))
    out: list[str] = [""] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(encoded[k]) for k in chunk)
            ids = torch.tensor([[pad] * (width - len(encoded[k])) + encoded[k] for k in chunk], device=device)
            mask = torch.tensor(
                [[0] * (width - len(encoded[k])) + [1] * len(encoded[k]) for k in chunk], device=device
            )
            with torch.no_grad():
                generated = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=pad,
                )
            for k, row in zip(chunk, generated[:, width:].tolist()):
                out[k] = tokenizer.decode(row, skip_special_tokens=True)
    finally:
        model.train(was_training)
    return out


def evaluate_proxy(trainer, test_dataset: Dataset, settings: ProxySettings, answer_column: str = "answer") -> dict:
    """Held-out loss (mean over rows of the completion's mean token loss) and greedy final-answer accuracy."""
    losses, _ = trainer.losses(test_dataset, settings.eval_batch_size)
    prompts = test_dataset["prompt"] if "prompt" in test_dataset.column_names else _chat_prompts(test_dataset)
    generations = generate_answers(
        trainer.model, trainer.processing_class, prompts, settings.max_new_tokens, settings.eval_batch_size
    )
    scores = final_answer_accuracy(generations, test_dataset[answer_column])
    return {
        "heldout_loss": float(np.nanmean(losses)) if np.isfinite(losses).any() else math.nan,
        **scores,
        "n_test": len(test_dataset),
        "example_generation": generations[0] if generations else None,
    }


def _chat_prompts(dataset: Dataset) -> list[list[dict]]:
    if "messages" not in dataset.column_names:
        raise ValueError(f"evaluate_proxy: the test set needs a prompt or messages column, has {dataset.column_names}")
    return [[m for m in chat if m["role"] != "assistant"] for chat in dataset["messages"]]


def train_and_evaluate(
    model_dir: str | Path,
    train_dataset: Dataset,
    test_dataset: Dataset,
    settings: ProxySettings,
    *,
    seed: int,
    output_dir: str | Path,
) -> dict[str, Any]:
    """`train_proxy` then `evaluate_proxy`; one row of a results table."""
    started = time.perf_counter()
    trainer = train_proxy(model_dir, train_dataset, settings, seed=seed, output_dir=output_dir)
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    result = {
        "n_train": len(train_dataset),
        "steps": trainer.state.global_step,
        "final_train_loss": logged[-1] if logged else math.nan,
        **evaluate_proxy(trainer, test_dataset, settings),
        "wall_s": round(time.perf_counter() - started, 2),
    }
    del trainer
    return result


# ---- the sweep -------------------------------------------------------------------------------------------------


def keep_ratio_sweep(
    model_dir: str | Path,
    scored_dataset: Dataset,
    test_dataset: Dataset,
    *,
    keeps: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    columns: Sequence[str] = ("resonance",),
    settings: ProxySettings | None = None,
    seed: int = 0,
    output_dir: str | Path,
    select_kwargs: dict | None = None,
    cache: dict | None = None,
) -> list[dict[str, Any]]:
    """Train a proxy from `model_dir` on `select_by_resonance(scored_dataset, keep, column=c)` (each column in its
    own direction, `resofilter_hf.columns`) for every column and keep share, and evaluate each on `test_dataset`. Returns one dict per (column, keep), in that
    order, with the end each selection dropped ("drop").

    A selection equal to one already trained (e.g. keep=1.0 under every column) is trained once; pass the same
    `cache` dict to several calls to share those runs.
    """
    settings = settings or ProxySettings()
    cache = {} if cache is None else cache
    indexed = scored_dataset.add_column(ROW_ID, list(range(len(scored_dataset))))
    table = []
    for column in columns:
        for keep in keeps:
            options = dict(select_kwargs or {})
            selected = select_by_resonance(indexed, keep=keep, column=column, **options)
            key = (seed, tuple(selected[ROW_ID]))
            if key not in cache:
                folder = Path(output_dir) / f"{column}-keep{round(keep * 100)}-seed{seed}"
                cache[key] = train_and_evaluate(
                    model_dir, selected.remove_columns(ROW_ID), test_dataset, settings, seed=seed, output_dir=folder
                )
            drop = read_provenance(selected)["selection"]["drop"]
            row = {"column": column, "keep": keep, "seed": seed, "drop": drop, "n_input": len(indexed)}
            table.append({**row, **cache[key]})
    return table


def summarize(table: Sequence[dict], by: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Mean, sample standard deviation (0 for one run) and count of `metrics` over the rows sharing `by`."""
    groups: dict[tuple, list[dict]] = {}
    for row in table:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    out = []
    for key, rows in groups.items():
        entry = dict(zip(by, key))
        entry["n_runs"] = len(rows)
        for metric in metrics:
            values = np.asarray([r[metric] for r in rows], dtype=np.float64)
            entry[f"{metric}_mean"] = float(values.mean())
            entry[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out
