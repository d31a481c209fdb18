"""`resofilter demo`: the whole job on the embedded toy world, start to finish, with nothing from the Hub.

Each step is one small function that reads and writes inside one output folder, so the story can grow (score,
select, retrain, evaluate) by adding steps to `run_demo`. Today it:

1. generates flawed synthetic math problems (train) and clean held-out ones (test),
2. builds a tiny causal LM from scratch,
3. fine-tunes it on the training problems with TRL's SFTTrainer,
4. writes ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from .toy.data import make_math_problems, make_test_problems


@dataclass(frozen=True)
class DemoSettings:
    """Sizes for one demo run; `quick()` shrinks them to fit a minute on two CPU cores."""

    n_train: int = 1000
    n_test: int = 200
    flaw_rate: float = 0.3
    num_layers: int = 4
    hidden_size: int = 128
    intermediate_size: int = 256
    num_heads: int = 4
    num_kv_heads: int = 2
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 3e-3
    max_length: int = 256

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(n_train=200, n_test=50, hidden_size=64, intermediate_size=128)


# ---------------------------------------------------------------------------------------------------------------
# Steps


def make_data(out: Path, settings: DemoSettings, seed: int) -> tuple[Dataset, Dataset]:
    """Flawed training problems and clean test problems (no question shared), saved as jsonl under data/."""
    train = make_math_problems(settings.n_train, seed=seed, flaw_rate=settings.flaw_rate, style="conversational")
    train_questions = [p[0]["content"] for p in train["prompt"]]
    test = make_test_problems(settings.n_test, seed=seed, exclude=train_questions, style="conversational")
    (out / "data").mkdir(parents=True, exist_ok=True)
    train.to_json(out / "data" / "train.jsonl")
    test.to_json(out / "data" / "test.jsonl")
    return train, test


def build_model(out: Path, settings: DemoSettings, seed: int) -> Path:
    """The tiny base model the demo starts from."""
    from .toy.model import build_tiny_model

    return build_tiny_model(
        out / "base-model",
        seed=seed,
        num_layers=settings.num_layers,
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_heads=settings.num_heads,
        num_kv_heads=settings.num_kv_heads,
    )


def finetune(out: Path, model_dir: Path, train: Dataset, settings: DemoSettings, seed: int) -> dict[str, Any]:
    """Supervised fine-tuning on `train` (loss on the completions only); the model lands in sft/model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(out / "sft"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        max_length=settings.max_length,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        dataloader_num_workers=0,
        seed=seed,
        disable_tqdm=False,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=train.select_columns(["prompt", "completion"]),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    result = trainer.train()
    model_out = out / "sft" / "model"
    trainer.model.save_pretrained(model_out)  # not trainer.save_model: that also pickles the training args
    trainer.processing_class.save_pretrained(model_out)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "train_loss": result.training_loss,
        "logged_losses": losses,
        "steps": trainer.state.global_step,
        "model_dir": str(model_out),
    }


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------------


def run_demo(
    output_dir: str | Path = "resofilter-demo",
    *,
    quick: bool = False,
    seed: int = 0,
    threads: int | None = None,
    settings: DemoSettings | None = None,
) -> dict[str, Any]:
    """Run the demo into `output_dir` and return its summary (also written to ``summary.json``).

    `threads` sets torch's intra-op thread count (default: every CPU core this process may use).
    """
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = settings or (DemoSettings.quick() if quick else DemoSettings())
    threads = threads or _available_cores()
    torch.set_num_threads(threads)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        value = fn(*args)
        timings[name] = round(time.perf_counter() - t0, 2)
        return value

    print(
        f"[1/3] generating {settings.n_train} training problems ({settings.flaw_rate:.0%} flawed), "
        f"{settings.n_test} test problems"
    )
    train, test = timed("data", make_data, out, settings, seed)
    print("[2/3] building the tiny model")
    model_dir = timed("model", build_model, out, settings, seed)
    print("[3/3] fine-tuning with TRL's SFTTrainer")
    sft = timed("finetune", finetune, out, model_dir, train, settings, seed)

    summary = {
        "output_dir": str(out.resolve()),
        "quick": quick,
        "seed": seed,
        "settings": asdict(settings),
        "torch_threads": threads,
        "flaw_counts": {f: train["flaw"].count(f) for f in sorted(set(train["flaw"]))},
        "base_model_dir": str(model_dir),
        "sft": sft,
        "timings_s": {**timings, "total": round(time.perf_counter() - started, 2)},
        "platform": platform.platform(),
        "versions": _versions(),
    }
    path = write_summary(out, summary)
    if not math.isfinite(sft["train_loss"]):
        raise RuntimeError(f"training loss is not finite ({sft['train_loss']}); see {path}")
    print(f"done in {summary['timings_s']['total']:.0f} s; everything is in {out.resolve()} (summary: {path.name})")
    return summary


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("resofilter-hf", "torch", "transformers", "trl", "datasets", "tokenizers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
