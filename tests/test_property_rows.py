"""Property-based: generated datasets mixing good rows with every bad kind (empty and whitespace answers, random
Unicode, rows cut partly or wholly by max_length, rows whose forward turns NaN, None fields) in the three dataset
shapes. Whatever the mix, `score()` returns exactly the input rows in input order; every non-finite score has a
non-ok status saying why; the cut rows are flagged; and the only error is the start-up one, naming the first bad
row's index and field. The same rows as a stream give the very same result, row for row and bit for bit. One tiny
model and one trainer serve every example; each example scores its own rows."""

import math
import re

import datasets
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from resofilter_hf import ResonanceConfig, ResonanceTrainer
from resofilter_hf.engine.rows import check_train_rows
from resofilter_hf.toy import cached_tiny_model, make_math_problems


MAX_LENGTH = 40
POISON = "<|system|>"  # a special token no generated text contains; the embedding hook makes its position NaN
KINDS = ("good", "empty", "whitespace", "unicode", "long", "long_prompt", "poison", "none")
SHAPES = ("prompt_completion", "text", "messages")
SCORE_STATUSES = {"ok", "empty_completion", "empty_text", "truncated", "no_loss_tokens", "nonfinite"}

unicode_text = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=12)
row = st.tuples(st.sampled_from(KINDS), unicode_text)
example = st.tuples(st.sampled_from(SHAPES), st.lists(row, min_size=1, max_size=6))


@pytest.fixture(scope="module")
def parts_dir(tmp_path_factory) -> str:
    """One parts folder for the streamed runs: each example's run replaces the last one's parts."""
    return str(tmp_path_factory.mktemp("parts"))


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    datasets.disable_progress_bars()
    model_dir = cached_tiny_model(arch="llama")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    args = ResonanceConfig(
        str(tmp_path_factory.mktemp("property")), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True,
        max_length=MAX_LENGTH, resonance_resume=False, resonance_batch_size=6, resonance_last_n_layers=2,
    )  # fmt: skip
    trainer = ResonanceTrainer(model, args, train_dataset=make_math_problems(2), processing_class=tokenizer)
    poison_id = tokenizer.convert_tokens_to_ids(POISON)

    def nan_at_poison(module, args, output):
        return output.masked_fill((args[0] == poison_id)[..., None], math.nan)

    handle = trainer.model.get_input_embeddings().register_forward_hook(nan_at_poison)
    yield trainer
    handle.remove()
    datasets.enable_progress_bars()


def _answer(kind: str, text: str) -> str | None:
    return {
        "good": f"It is 4. {text}",
        "empty": "",
        "whitespace": " \n\t\u3000"[: 1 + len(text) % 4],
        "unicode": text,
        "long": " ".join(["twenty two plus two"] * 20) + text,
        "long_prompt": f"It is 4. {text}",
        "poison": f"It is {POISON} 4. {text}",
        "none": None,
    }[kind]


def _prompt(kind: str, text: str) -> str:
    return " ".join(["what is two plus two"] * 20) if kind == "long_prompt" else f"What is 2 + 2? {text[:3]}"


def build(shape: str, rows: list[tuple[str, str]]) -> datasets.Dataset:
    prompts = [_prompt(k, t) for k, t in rows]
    answers = [_answer(k, t) for k, t in rows]
    if shape == "prompt_completion":
        return datasets.Dataset.from_dict({"prompt": prompts, "completion": answers})
    if shape == "text":
        return datasets.Dataset.from_dict(
            {"text": [None if a is None else (a if k in ("empty", "whitespace") else p + " " + a)
                      for (k, _), p, a in zip(rows, prompts, answers)]}
        )  # fmt: skip
    messages = [
        [{"role": "user", "content": p}, {"role": "assistant", "content": a}] for p, a in zip(prompts, answers)
    ]
    return datasets.Dataset.from_dict({"messages": messages})


def check_example(trainer, parts_dir, shape, rows):
    dataset = build(shape, rows)
    bad = [i for i, (kind, _) in enumerate(rows) if kind == "none"]
    if bad:  # start-up error naming the first bad row and its field; nothing computed
        field = {"prompt_completion": "`completion`", "text": "`text`", "messages": r"`messages\[1\]\['content'\]`"}
        pattern = rf"row {bad[0]}: .*{field[shape]}"
        with pytest.raises(ValueError, match=pattern):
            trainer.score(dataset)
        with pytest.raises(ValueError, match=pattern):
            check_train_rows(dataset)
        with pytest.raises(ValueError, match=pattern):
            trainer.score(dataset.to_iterable_dataset(), parts_dir=parts_dir)
        return
    scored = trainer.score(dataset)
    streamed = list(trainer.score(dataset.to_iterable_dataset(), parts_dir=parts_dir))
    assert repr(streamed) == repr(scored.to_list()), "a stream scores exactly like the dataset"
    assert len(scored) == len(dataset)
    for column in dataset.column_names:  # exactly the input rows, in input order
        assert scored[column] == dataset[column]
    status = scored["resonance_status"]
    values = np.array(scored["resonance"], dtype=float)
    cut = scored["resonance_truncated"]
    empty_status = "empty_text" if shape == "text" else "empty_completion"
    for i, (kind, text) in enumerate(rows):
        assert status[i] in SCORE_STATUSES
        assert (status[i] == "ok") == bool(np.isfinite(values[i])), (i, kind, status[i], values[i])
        if not np.isfinite(values[i]):
            assert status[i] != "ok"
        trained = dataset[i]["text"] if shape == "text" else _answer(kind, text)  # what the loss covers
        if not trained.strip():
            assert status[i] == empty_status, (i, kind)
        elif kind == "poison":
            assert status[i] in ("nonfinite", "truncated"), (i, status[i])
        elif kind == "long" or (kind == "long_prompt" and shape != "prompt_completion"):  # (the whole row is
            # trained on in the text and messages shapes): cut after its first loss token
            assert cut[i] and status[i] == "ok", (i, kind, status[i])
        elif kind == "long_prompt":  # completion-only loss, cut before the answer: nothing left to score
            assert cut[i] and status[i] == "truncated", (i, status[i])
        if status[i] == "truncated":
            assert cut[i]


QUIET = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# the rows are bad on purpose: the notices they provoke are the behaviour under test elsewhere, not news here
pytestmark = [
    pytest.mark.filterwarnings("ignore:.* rows have no resonance score:UserWarning"),
    pytest.mark.filterwarnings("ignore:.* rows are longer than max_length:UserWarning"),
    pytest.mark.filterwarnings("ignore:The loss, and so:UserWarning"),
]


@settings(max_examples=120, derandomize=True, **QUIET)
@given(example)
def test_any_mix_of_rows_keeps_every_row_and_explains_every_nan(trainer, parts_dir, case):
    check_example(trainer, parts_dir, *case)


@pytest.mark.slow
@settings(max_examples=1000, **QUIET)
@given(st.tuples(st.sampled_from(SHAPES), st.lists(row, min_size=1, max_size=16)))
def test_any_mix_of_rows_larger_run(trainer, parts_dir, case):
    check_example(trainer, parts_dir, *case)


def test_the_patterns_match_what_the_checker_says():
    """The start-up messages this test expects are the checker's own (guards the regexes above)."""
    for shape in SHAPES:
        with pytest.raises(ValueError) as info:
            check_train_rows(build(shape, [("good", "x"), ("none", "")]))
        assert re.match(r"row 1: ", str(info.value))
