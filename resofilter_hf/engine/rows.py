"""Checks on input rows before any compute: malformed rows fail by index, empty ones get a status.

TRL accepts several dataset shapes (language modeling `text` or `messages`, prompt/completion as strings or as
role/content lists, pre-tokenized `input_ids`). A bad row deep inside a long scoring run should fail at once, with
its index and the offending field, not as a tokenizer traceback an hour in.
"""

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from ..columns import result_columns


# One convention for row identity: a row's id is its position in the dataset the user passed. It rides through
# TRL's preparation, collators, selection and sweeps as the ROW_ID column, and is written as `row` in scores files.
ROW_ID = "__resonance_row_id__"
SCORES_ROW = "row"
STATUS_OK = "ok"
STATUS_EMPTY = "empty_completion"  # prompt/completion or messages rows whose answer is empty or whitespace
STATUS_EMPTY_TEXT = "empty_text"  # language-modeling rows whose text is empty or whitespace
STATUS_TRUNCATED = "truncated"  # cut by `max_length` before its first loss token: nothing left to score
STATUS_NO_TOKENS = "no_loss_tokens"
STATUS_NONFINITE = "nonfinite"  # the model gave this row a non-finite loss or gradient


def _check_messages(value, row: int, column: str) -> None:
    """A list of chat turns as TRL's templates take them: each a dict with a string 'role' and a 'content' that is
    a string, a list of typed parts (text, image, ...), or None on a turn that carries `tool_calls`."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"row {row}: `{column}` must be a non-empty list of messages, got {_short(value)}.")
    for turn, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(
                f"row {row}: `{column}[{turn}]` must be a dict with a string 'role', got {_short(message)}."
            )
        content = message.get("content")
        if isinstance(content, str) or (content is None and message.get("tool_calls")):
            continue
        if isinstance(content, list) and all(isinstance(part, dict) and "type" in part for part in content):
            continue
        raise ValueError(
            f"row {row}: `{column}[{turn}]['content']` must be a string, a list of typed parts "
            f"([{{'type': 'text', 'text': ...}}, ...]) or None on a turn with `tool_calls`; got {_short(content)}."
        )


def _text_of(message: dict) -> str:
    """The text a turn carries: its content string, its text parts, or a marker for tool calls and non-text
    parts (which are not empty)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = [p.get("text") or "" if p.get("type") == "text" else "<part>" for p in content or []]
    return "".join(parts) + ("<tool_calls>" if message.get("tool_calls") else "")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dataset_kind(column_names: list[str], text_field: str) -> str:
    """'tokenized' | 'prompt_completion' | 'messages' | 'text', or a ValueError naming what is there."""
    if "input_ids" in column_names:
        return "tokenized"
    if "prompt" in column_names and "completion" in column_names:
        return "prompt_completion"
    if "messages" in column_names:
        return "messages"
    if text_field in column_names:
        return "text"
    raise ValueError(
        f"Cannot score a dataset with columns {column_names}: expected 'prompt' and 'completion', 'messages', "
        f"'{text_field}' (`dataset_text_field`), or pre-tokenized 'input_ids'."
    )


def check_rows(
    dataset: Dataset, text_field: str = "text", formatting_func=None, vocab_size: int | None = None, offset: int = 0
) -> list[str]:
    """Raise on the first malformed row; return a status per row ('ok', 'empty_completion' or 'empty_text').

    With a `formatting_func` (TRL turns each row into the text it returns), the rows are checked on that text.
    `dataset` may be a window of a larger one starting at row `offset`: errors name rows by their index there."""
    if formatting_func is not None and "input_ids" not in dataset.column_names:
        return _check_formatted(dataset, formatting_func, offset)
    kind = dataset_kind(dataset.column_names, text_field)
    statuses = []
    if kind == "tokenized":
        labels = dataset["labels"] if "labels" in dataset.column_names else [None] * len(dataset)
        for i, (ids, row_labels) in enumerate(zip(dataset["input_ids"], labels), start=offset):
            _check_token_ids(ids, i, "input_ids", vocab_size)
            if "labels" in dataset.column_names:
                _check_labels(row_labels, len(ids), i, vocab_size)
            statuses.append(STATUS_OK)
    elif kind == "prompt_completion":
        for i, (prompt, completion) in enumerate(zip(dataset["prompt"], dataset["completion"]), start=offset):
            if isinstance(prompt, str) and isinstance(completion, str):
                statuses.append(STATUS_EMPTY if not completion.strip() else STATUS_OK)
                continue
            if isinstance(prompt, list) and isinstance(completion, list):
                _check_messages(prompt, i, "prompt")
                _check_messages(completion, i, "completion")
                empty = all(not _text_of(m).strip() for m in completion)
                statuses.append(STATUS_EMPTY if empty else STATUS_OK)
                continue
            bad = "prompt" if not isinstance(prompt, (str, list)) else "completion"
            raise ValueError(
                f"row {i}: `prompt` and `completion` must both be strings or both lists of messages; "
                f"`{bad}` is {_short(prompt if bad == 'prompt' else completion)}."
            )
    elif kind == "messages":
        for i, messages in enumerate(dataset["messages"], start=offset):
            _check_messages(messages, i, "messages")
            answers = [_text_of(m) for m in messages if m["role"] == "assistant"]
            statuses.append(STATUS_EMPTY if answers and not any(a.strip() for a in answers) else STATUS_OK)
    else:
        for i, text in enumerate(dataset[text_field], start=offset):
            if not isinstance(text, str):
                raise ValueError(f"row {i}: `{text_field}` must be a string, got {_short(text)}.")
            statuses.append(STATUS_EMPTY_TEXT if not text.strip() else STATUS_OK)
    return statuses


def _check_token_ids(ids, row: int, column: str, vocab_size: int | None) -> None:
    if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise ValueError(f"row {row}: `{column}` must be a non-empty list of ints, got {_short(ids)}.")
    if vocab_size is not None:
        bad = next((t for t in ids if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise ValueError(
                f"row {row}: `{column}` holds token id {bad}, outside the model's vocabulary (0..{vocab_size - 1})."
            )


def _check_labels(labels, n: int, row: int, vocab_size: int | None) -> None:
    if not isinstance(labels, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in labels):
        raise ValueError(f"row {row}: `labels` must be a list of ints (-100 for no loss), got {_short(labels)}.")
    if len(labels) != n:
        raise ValueError(f"row {row}: `labels` has {len(labels)} entries for {n} `input_ids`.")
    bad = next((t for t in labels if t != -100 and not (0 <= t < (vocab_size or 2**63))), None)
    if bad is not None:
        raise ValueError(f"row {row}: `labels` holds {bad}, neither -100 nor a token id of the model's vocabulary.")


def _check_formatted(dataset: Dataset, formatting_func, offset: int) -> list[str]:
    statuses = []
    for i, row in enumerate(dataset, start=offset):
        text = formatting_func(row)
        if not isinstance(text, str):
            raise ValueError(f"row {i}: `formatting_func` returned {_short(text)}, not a string.")
        statuses.append(STATUS_EMPTY_TEXT if not text.strip() else STATUS_OK)
    return statuses


def check_rows_windowed(
    dataset: Dataset, text_field: str, window_rows: int = 16384, formatting_func=None, vocab_size: int | None = None
) -> list[str]:
    """`check_rows` a window at a time, so a large dataset's columns never sit in Python lists all at once."""
    n, statuses = len(dataset), []
    for start in range(0, n, window_rows):
        window = dataset.select(range(start, min(n, start + window_rows)))
        statuses += check_rows(window, text_field, formatting_func, vocab_size, offset=start)
    return statuses


def check_train_rows(dataset, text_field: str = "text", formatting_func=None, vocab_size: int | None = None) -> None:
    """Fail at trainer construction on a train set TRL's preparation would crash on, naming the row and field.

    Only a `datasets.Dataset` of a recognised shape is checked (a stream, or columns that a `formatting_func`
    turns into text, are TRL's to read). Empty answers are no error here: training simply learns nothing from them.
    """
    if not isinstance(dataset, Dataset):
        return
    if len(dataset) == 0:
        raise ValueError(
            f"`train_dataset` has 0 rows (columns {dataset.column_names}): there is nothing to train on or score."
        )
    if formatting_func is None:
        try:
            dataset_kind(dataset.column_names, text_field)
        except ValueError:
            return
    check_rows_windowed(dataset, text_field, formatting_func=formatting_func, vocab_size=vocab_size)


def check_no_row_id(column_names: Sequence[str]) -> None:
    """A column of the user's named like the row-id column would be lost: refuse it by name."""
    if ROW_ID in column_names:
        raise ValueError(
            f"the dataset has a column named {ROW_ID!r}, which resofilter-hf uses to follow rows through TRL's "
            "preparation; rename that column."
        )


def claim_result_columns(
    column_names: Sequence[str], column: str, earlier_column: str | None = None, written: Sequence[str] | None = None
) -> list[str]:
    """The existing columns a new scoring will replace; refuses to overwrite one of the user's own columns.

    `written` are the columns the scoring writes (default: `score()`'s, `columns.result_columns(column)`; in flight,
    one per epoch). `column` (the score column) may replace a column only when that column holds scores: it is
    named like the result columns (``resonance*``) or an earlier scoring wrote it (`earlier_column`, from the
    provenance). Any other clash is an error naming the column; replaced columns are named in a warning.
    """
    written = result_columns(column) if written is None else frozenset(written)
    names = set(column_names)
    if column in names and column in written and column != earlier_column and not column.startswith("resonance"):
        raise ValueError(
            f"`resonance_column={column!r}` is already a column of the dataset: scoring would overwrite it. "
            "Choose another `resonance_column` (e.g. 'resonance') or rename the dataset's column."
        )
    replaced = [c for c in column_names if c in written]
    if replaced:
        warnings.warn(
            f"the dataset already has result columns {replaced} (an earlier scoring?); they are replaced by this one.",
            UserWarning,
            stacklevel=3,
        )
    return replaced


def truncated_rows(rows: Dataset, offset: int, prepared: pa.Table, max_length: int | None, prepare) -> set[int]:
    """Ids (`offset` + position in `rows`) of the rows that `max_length` cut but left loss tokens in: they are
    scored on their first `max_length` tokens. `prepared` is the prepared table (`id`, `input_ids`); only rows
    exactly `max_length` long can have been cut, and only those go through `prepare(rows, truncate=False)` again."""
    if not max_length or not prepared.num_rows:
        return set()
    lengths = pc.list_value_length(prepared.column("input_ids")).to_pylist()
    full = [i - offset for i, n in zip(prepared.column("id").to_pylist(), lengths) if n >= max_length]
    if not full:
        return set()
    again = prepare(rows.add_column(ROW_ID, list(range(offset, offset + len(rows)))).select(full), truncate=False)
    return {r[ROW_ID] for r in again if len(r["input_ids"]) > max_length}


def with_row_flags(table: pa.Table, column: str, cut: set[int], offset: int = 0) -> pa.Table:
    """A window's joined result `table` (rows `offset`, `offset + 1`, ...) with `nonfinite` for scored rows whose
    loss or score is NaN/inf (score NaN) and a `resonance_truncated` column (rows in `cut`, or `truncated`)."""
    status = table.column("resonance_status").to_pylist()
    score = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
    mark_nonfinite(status, score, table.column("resonance_loss").to_numpy(zero_copy_only=False))
    table = table.set_column(table.column_names.index(column), column, pa.array(score, pa.float64()))
    table = table.set_column(
        table.column_names.index("resonance_status"), "resonance_status", pa.array(status, pa.string())
    )
    flags = [offset + i in cut or s == STATUS_TRUNCATED for i, s in enumerate(status)]
    return table.append_column("resonance_truncated", pa.array(flags, pa.bool_()))


def mark_nonfinite(status: list[str], score, loss) -> list[int]:
    """Rows the engine scored whose loss or score is NaN/inf: their status becomes `nonfinite` and their score
    NaN (in place; `score` and `loss` are float arrays). Returns those rows."""
    bad = [
        i for i, s in enumerate(status) if s == STATUS_OK and not (math.isfinite(score[i]) and math.isfinite(loss[i]))
    ]
    for i in bad:
        status[i], score[i] = STATUS_NONFINITE, math.nan
    return bad
