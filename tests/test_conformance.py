"""`ResonanceTrainer` in place of `SFTTrainer`, scoring off: the same run, case for case.

Each case is run twice, by the stock `SFTTrainer` and by `ResonanceTrainer`, from the same model files, data and
arguments: the loss at every step, the eval losses, the step count and every final weight must be identical
(bit for bit: float32 on one CPU thread is deterministic), and where the stock trainer raises, ours must raise the
same error. The cases cover each argument kind, each dataset format TRL accepts, PEFT methods and the trainer
options users reach for.
"""

import dataclasses
from collections.abc import Callable

import pytest
import torch
from datasets import Dataset
from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig
from trainer_runs import COMMON
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainingArguments
from transformers.utils import is_torch_bf16_gpu_available
from trl import SFTConfig, SFTTrainer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.toy import cached_tiny_model, make_math_problems


N_ROWS, STEPS = 9, 3


class LogEveryStep(TrainerCallback):
    """Log the loss at every step, whatever `logging_steps` is (default arguments log every 10)."""

    def on_step_end(self, args, state, control, **kwargs):
        control.should_log = True


@dataclasses.dataclass
class Case:
    args: str = "SFTConfig"  # "ResonanceConfig" | "SFTConfig" | "TrainingArguments" | "None"
    data: str = "prompt-completion"
    kwargs: dict = dataclasses.field(default_factory=dict)  # more config fields
    resonance: dict = dataclasses.field(default_factory=dict)  # resonance_* fields (ours, with args=ResonanceConfig)
    peft: Callable[[], object] | None = None
    arch: str = "llama"
    model_as: str = "object"  # "object" (a loaded model) or "path" (SFTTrainer loads it)
    tokenizer: bool = True  # False: processing_class=None, SFTTrainer loads it from the model path
    eval: str | None = None  # None | "one" | "dict" (several eval datasets)
    formatting_func: bool = False
    resume: bool = False  # train, then let a new trainer resume from checkpoint-2
    stock_fails: str | None = None  # where the stock trainer itself raises, the message it raises
    slow: bool = False  # a combination of what other cases cover one by one


def lora_qv():
    return LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)


CASES = {
    # argument kinds
    "args=ResonanceConfig": Case(args="ResonanceConfig"),
    "args=ResonanceConfig+unscorable-targets": Case(  # never checked: nothing is scored
        args="ResonanceConfig", resonance=dict(resonance_modules=["mlp.nope"], resonance_target="lora")
    ),
    "args=SFTConfig": Case(args="SFTConfig"),
    "args=TrainingArguments": Case(args="TrainingArguments"),
    "args=None": Case(args="None"),
    "args=SFTConfig+eos_token": Case(kwargs=dict(eos_token="<|end|>")),
    "args=SFTConfig+pad_token": Case(kwargs=dict(pad_token="<unk>")),
    "args=TrainingArguments+conversational": Case(args="TrainingArguments", data="conversational", slow=True),
    "args=None+messages": Case(args="None", data="messages", slow=True),
    # dataset formats
    "data=conversational-prompt-completion": Case(data="conversational"),
    "data=messages": Case(data="messages"),
    "data=text": Case(data="text"),
    "data=text+dataset_text_field": Case(data="body", kwargs=dict(dataset_text_field="body")),
    "data=input_ids": Case(data="input_ids"),
    "data=formatting_func": Case(data="question-answer", formatting_func=True),
    "data=iterable": Case(data="iterable"),
    "data=tool-calls": Case(data="tool-calls"),  # an assistant turn with content None and tool_calls; a tool turn
    "data=content-parts": Case(data="content-parts"),  # content as a list of typed parts
    "eval=one": Case(eval="one", kwargs=dict(eval_strategy="steps", eval_steps=2)),
    "eval=dict": Case(eval="dict", kwargs=dict(eval_strategy="steps", eval_steps=2)),
    # PEFT
    "peft=lora-attention": Case(peft=lora_qv),
    "peft=lora-attention+ResonanceConfig": Case(args="ResonanceConfig", peft=lora_qv, slow=True),
    "peft=lora-up_proj": Case(peft=lambda: LoraConfig(r=4, target_modules=["up_proj"], lora_dropout=0.0)),
    "peft=prompt-tuning": Case(peft=lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)),
    "peft=prefix-tuning": Case(
        peft=lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
        kwargs=dict(gradient_checkpointing=False),
    ),
    "peft=prefix-tuning+checkpointing": Case(  # the prefix cache and TRL's default checkpointing do not mix
        peft=lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
        stock_fails="The size of tensor a",
    ),
    "peft=p-tuning": Case(
        peft=lambda: PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16)
    ),
    "peft=ia3": Case(peft=lambda: IA3Config(task_type="CAUSAL_LM")),
    # models and how they are given
    "model=path": Case(model_as="path", kwargs=dict(model_init_kwargs={"dtype": "float32"})),
    "model=path+no-tokenizer": Case(model_as="path", tokenizer=False),
    "arch=qwen2": Case(arch="qwen2"),
    "arch=gemma2": Case(arch="gemma2", data="conversational"),
    "arch=gpt_neox": Case(arch="gpt_neox"),
    "arch=gpt2": Case(arch="gpt2"),  # Conv1D
    "arch=phi3": Case(arch="phi3"),  # fused gate_up_proj
    "arch=qwen3_moe": Case(arch="qwen3_moe"),  # fused 3-D experts, router aux loss
    "arch=gpt2+lora-attention": Case(arch="gpt2", peft=lambda: LoraConfig(r=4, target_modules=["c_attn"])),
    # trainer options
    "opt=packing": Case(kwargs=dict(packing=True, max_length=64)),
    "opt=padding-free": Case(kwargs=dict(padding_free=True, max_length=None)),
    "opt=assistant-only-loss": Case(data="messages", kwargs=dict(assistant_only_loss=True)),
    "opt=completion-only-loss-off": Case(kwargs=dict(completion_only_loss=False)),
    "opt=truncation": Case(kwargs=dict(max_length=50)),  # cuts every row, drops the 3 with longer prompts
    "opt=truncation-drops-all": Case(kwargs=dict(max_length=24), stock_fails="num_samples should be a positive"),
    "opt=grad-accumulation": Case(kwargs=dict(gradient_accumulation_steps=2, per_device_train_batch_size=2)),
    "opt=dft-loss": Case(kwargs=dict(loss_type="dft")),
    "opt=neftune": Case(kwargs=dict(neftune_noise_alpha=5.0)),
    "opt=no-checkpointing+cosine": Case(kwargs=dict(gradient_checkpointing=False, lr_scheduler_type="cosine")),
    "opt=shuffle-dataset": Case(kwargs=dict(shuffle_dataset=True)),
    "opt=resume-from-checkpoint": Case(kwargs=dict(save_strategy="steps", save_steps=2), resume=True),
    "opt=resume+lora-attention": Case(
        kwargs=dict(save_strategy="steps", save_steps=2), resume=True, peft=lora_qv, slow=True
    ),
}


# The toy template knows system/user/assistant string turns; TRL's tool-calling and multimodal tests use templates
# that render tool calls, tool turns and content part lists, as this one does.
TOOL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% elif m['content'] %}"
    "{% for p in m['content'] %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% for c in m.get('tool_calls') or [] %}<call>{{ c['function']['name'] }}"
    "{{ c['function']['arguments'] | tojson }}</call>{% endfor %}"
    "<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TEMPLATED = ("tool-calls", "content-parts")


def tool_turns(prompt: str, completion: str) -> list[dict]:
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": prompt[:20]}}}
    return [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "name": "calculator", "content": "42"},
        {"role": "assistant", "content": completion},
    ]


def make_dataset(kind: str, tokenizer_dir, seed: int) -> Dataset:
    if kind in ("conversational", "messages"):
        return make_math_problems(N_ROWS, seed=seed, style=kind)
    if kind in TEMPLATED:
        rows = make_math_problems(N_ROWS, seed=seed)
        if kind == "tool-calls":
            return Dataset.from_dict(
                {"messages": [tool_turns(p, c) for p, c in zip(rows["prompt"], rows["completion"])]}
            )
        parts = [
            [{"role": "user", "content": [{"type": "text", "text": p}]},
             {"role": "assistant", "content": [{"type": "text", "text": c}]}]
            for p, c in zip(rows["prompt"], rows["completion"])
        ]  # fmt: skip
        return Dataset.from_dict({"messages": parts})
    rows = make_math_problems(N_ROWS, seed=seed)
    texts = [p + c for p, c in zip(rows["prompt"], rows["completion"])]
    if kind == "prompt-completion":
        return rows
    if kind in ("text", "body"):
        return Dataset.from_dict({kind: texts})
    if kind == "question-answer":
        return Dataset.from_dict({"question": rows["prompt"], "answer": rows["completion"]})
    if kind == "input_ids":
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        return Dataset.from_dict({"input_ids": [tokenizer(t)["input_ids"] for t in texts]})
    if kind == "iterable":
        return rows.to_iterable_dataset()
    raise ValueError(kind)


def make_args(case: Case, stock: bool, out: str):
    kwargs = {**COMMON, "max_steps": STEPS, **case.kwargs}
    if case.args == "None":
        if stock and not is_torch_bf16_gpu_available():
            # SFTConfig's defaults turn bf16 on and refuse a CPU-only machine (checked below); ResonanceConfig
            # falls back to fp32 there, so the reference is the stock trainer on those defaults with bf16=False.
            return SFTConfig(f"{cached_tiny_model(arch=case.arch).name}-SFT", bf16=False)
        return None
    if case.args == "TrainingArguments":
        return TrainingArguments(out, **kwargs)
    if case.args == "ResonanceConfig" and not stock:
        return ResonanceConfig(out, **kwargs, **case.resonance)
    return SFTConfig(out, **kwargs)


def formatting(example: dict) -> str:
    return f"Q: {example['question']}A: {example['answer']}"


def run(trainer_cls, case: Case, out) -> dict:
    """Build and train; the run's outcome, or the error it raised (type, message) and where."""
    model_dir = cached_tiny_model(arch=case.arch)
    evaluation = None
    if case.eval:
        held_out = make_dataset(case.data, model_dir, seed=2).take(4)
        evaluation = held_out if case.eval == "one" else {"a": held_out, "b": held_out.select([1, 0])}

    def tokenizer():
        loaded = AutoTokenizer.from_pretrained(model_dir)
        if case.data in TEMPLATED:
            loaded.chat_template = TOOL_TEMPLATE
        return loaded

    def make_trainer():
        return trainer_cls(
            model=str(model_dir) if case.model_as == "path" else AutoModelForCausalLM.from_pretrained(model_dir),
            args=make_args(case, trainer_cls is SFTTrainer, str(out)),
            train_dataset=make_dataset(case.data, model_dir, seed=1),
            eval_dataset=evaluation,
            processing_class=tokenizer() if case.tokenizer else None,
            callbacks=[LogEveryStep()],
            peft_config=case.peft() if case.peft else None,
            formatting_func=formatting if case.formatting_func else None,
        )

    stage = "construction"
    try:
        trainer = make_trainer()
        stage = "training"
        trainer.train()
        if case.resume:
            stage = "resuming"
            trainer = make_trainer()
            trainer.train(resume_from_checkpoint=f"{out}/checkpoint-2")
    except Exception as error:  # the outcome to compare
        return {"error": (stage, type(error).__name__, str(error))}
    log = trainer.state.log_history
    return {
        "losses": [h["loss"] for h in log if "loss" in h],
        "evals": [{k: v for k, v in h.items() if k.endswith("_loss")} for h in log if any("eval" in k for k in h)],
        "train_loss": next(h["train_loss"] for h in log if "train_loss" in h),
        "steps": trainer.state.global_step,
        "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
    }


def assert_same_outcome(ours: dict, stock: dict) -> None:
    if "error" in stock or "error" in ours:
        assert ours.get("error") == stock.get("error")
        return
    assert stock["steps"] > 0 and len(stock["losses"]) == stock["steps"], "a loss at every step"
    for key in ("losses", "evals", "train_loss", "steps"):
        assert ours[key] == stock[key], key
    assert ours["weights"].keys() == stock["weights"].keys()
    different = [k for k, v in stock["weights"].items() if not torch.equal(v, ours["weights"][k])]
    assert not different, f"weights differ: {different[:5]}"


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if c.slow else []) for n, c in CASES.items()]
)
def test_same_outcome_as_sft_trainer(name, tmp_path, monkeypatch):
    case = CASES[name]
    outcomes = {}
    for cls in (SFTTrainer, ResonanceTrainer):
        folder = tmp_path / cls.__name__
        folder.mkdir()
        monkeypatch.chdir(folder)  # args=None writes to ./<model>-SFT
        outcomes[cls] = run(cls, case, folder / "out")
    assert_same_outcome(outcomes[ResonanceTrainer], outcomes[SFTTrainer])
    stock_error = outcomes[SFTTrainer].get("error")
    if case.stock_fails:
        assert stock_error and stock_error[2].startswith(case.stock_fails), stock_error
    else:
        assert stock_error is None, stock_error
    if case.eval:
        assert outcomes[SFTTrainer]["evals"], "the eval dataset was evaluated"


def test_the_stock_trainer_refuses_default_arguments_on_a_cpu_only_machine():
    """Why the `args=None` reference above sets bf16=False: SFTConfig's own defaults fail here."""
    if is_torch_bf16_gpu_available():
        pytest.skip("a bf16 accelerator is present: the stock defaults work")
    with pytest.raises(ValueError, match="doesn't support bf16/gpu"):
        SFTConfig("out")
    assert ResonanceConfig("out").bf16 is False
