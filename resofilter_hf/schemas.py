"""Datasets whose columns have other names than TRL's: mapped to prompt/completion or messages, said in one line.

TRL trains on `prompt`/`completion`, `messages`, a text field or `input_ids`. Users' data comes as GSM8K's
`question`/`answer`, Alpaca's `instruction`/`input`/`output`, MetaMathQA's `query`/`response`, MATH's
`problem`/`solution` or ShareGPT's `conversations` of `from`/`value` turns. Those layouts are recognised and read as
TRL's with a notice; any other is mapped with `prompt_column`/`completion_column` (or `messages_column`), and a
dataset that fits nothing is refused with the columns found and the options to use. The user's rows are never
changed: scores come back beside their own columns; only what TRL prepares sees the mapped ones.
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from datasets import Dataset, IterableDataset

from .engine.rows import dataset_kind


# layout name -> (prompt column, completion column, optional column appended to the prompt)
PAIRS = {
    "GSM8K": ("question", "answer", None),
    "Alpaca": ("instruction", "output", "input"),
    "MetaMathQA": ("query", "response", None),
    "MATH": ("problem", "solution", None),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "tool": "tool", "function_call": "assistant", "observation": "tool"}  # fmt: skip


@dataclass(frozen=True)
class ColumnMap:
    """How a dataset's columns become TRL's: `prompt` + `completion` (and `prompt_extra`, appended to the prompt
    after a blank line when not empty), or `messages` (a ShareGPT `from`/`value` list when `sharegpt`)."""

    prompt: str | None = None
    completion: str | None = None
    prompt_extra: str | None = None
    messages: str | None = None
    sharegpt: bool = False
    layout: str = "prompt_column/completion_column"

    def describe(self) -> str:
        if self.messages:
            return f"{self.messages} -> messages"
        extra = f" (+ {self.prompt_extra})" if self.prompt_extra else ""
        return f"{self.prompt}{extra} -> prompt, {self.completion} -> completion"

    def columns_after(self, names: Sequence[str]) -> list[str]:
        """The column names `apply` leaves: the mapped ones replaced by TRL's."""
        used = {self.prompt, self.completion, self.prompt_extra, self.messages} - {None}
        new = ["messages"] if self.messages else ["prompt", "completion"]
        return [n for n in names if n not in used and n not in new] + new

    def apply(self, rows: Dataset | IterableDataset) -> Dataset | IterableDataset:
        """`rows` with TRL's columns instead of the mapped ones (other columns kept)."""
        used = [c for c in (self.prompt, self.completion, self.prompt_extra, self.messages) if c]
        names = rows.column_names or []
        kwargs = {"desc": "Mapping columns"} if isinstance(rows, Dataset) else {}
        return rows.map(
            self._row, with_indices=True, remove_columns=[c for c in used if c in names], **kwargs
        )  # fmt: skip

    def _row(self, row: dict, index: int) -> dict:
        if self.messages:
            turns = row[self.messages]
            return {"messages": [_turn(t, index, self.messages) for t in turns] if self.sharegpt else turns}
        prompt, extra = row[self.prompt], row.get(self.prompt_extra) if self.prompt_extra else None
        if isinstance(prompt, str) and isinstance(extra, str) and extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        return {"prompt": prompt, "completion": row[self.completion]}


def _turn(turn, row: int, column: str) -> dict:
    if not isinstance(turn, dict) or turn.get("from") not in SHAREGPT_ROLES:
        raise ValueError(
            f"row {row}: `{column}` turns must be dicts with 'from' in {sorted(SHAREGPT_ROLES)} and 'value'; got "
            f"{str(turn)[:60]!r}."
        )
    return {"role": SHAREGPT_ROLES[turn["from"]], "content": turn.get("value")}


def column_map(
    rows: Dataset | IterableDataset,
    text_field: str = "text",
    prompt_column: str | None = None,
    completion_column: str | None = None,
    messages_column: str | None = None,
) -> ColumnMap | None:
    """`resolve_columns` for the columns (and first row) of `rows`."""
    if isinstance(rows, IterableDataset):
        first = next(iter(rows.take(1)), None)
        names = rows.column_names or list(first or {})
    else:
        first = rows[0] if len(rows) else None
        names = rows.column_names
    return resolve_columns(names, text_field, prompt_column, completion_column, messages_column, first)


def resolve_columns(
    names: Sequence[str],
    text_field: str = "text",
    prompt_column: str | None = None,
    completion_column: str | None = None,
    messages_column: str | None = None,
    first_row: dict | None = None,
) -> ColumnMap | None:
    """The mapping a dataset with columns `names` needs (None: already TRL's layout), from the options if given,
    else from a recognised layout (with a one-line notice), else a ValueError naming the columns and the options."""
    names = list(names)
    if prompt_column or completion_column or messages_column:
        return _explicit(names, prompt_column, completion_column, messages_column)
    try:
        dataset_kind(names, text_field)
        return None
    except ValueError:
        pass
    found = _recognised(names, first_row)
    if found is None:
        raise ValueError(
            f"Cannot read a dataset with columns {names}: expected 'prompt' and 'completion', 'messages', "
            f"'{text_field}' (`dataset_text_field`) or pre-tokenized 'input_ids'. Name yours with "
            "`prompt_column=` and `completion_column=` (or `messages_column=`) in ResonanceConfig, or "
            "`--prompt_column` / `--completion_column` on the command line."
        )
    warnings.warn(
        f"Reading the {found.layout} layout: {found.describe()} (set `prompt_column`/`completion_column` to "
        "choose other columns).",
        UserWarning,
        stacklevel=4,
    )
    return found


def _explicit(names: list[str], prompt: str | None, completion: str | None, messages: str | None) -> ColumnMap:
    if messages and (prompt or completion):
        raise ValueError("Give either `messages_column` or `prompt_column` and `completion_column`, not both.")
    if not messages and not (prompt and completion):
        given = "prompt_column" if prompt else "completion_column"
        raise ValueError(f"`{given}` needs its pair: give both `prompt_column` and `completion_column`.")
    for option, column in (
        ("prompt_column", prompt),
        ("completion_column", completion),
        ("messages_column", messages),
    ):
        if column and column not in names:
            raise ValueError(f"`{option}={column!r}` is not a column of the dataset; its columns are {names}.")
    if messages:
        return ColumnMap(messages=messages, layout="messages_column")
    return ColumnMap(prompt=prompt, completion=completion)


def _recognised(names: list[str], first_row: dict | None) -> ColumnMap | None:
    for layout, (prompt, completion, extra) in PAIRS.items():
        if prompt in names and completion in names:
            extra = extra if extra in names else None
            shown = "/".join(c for c in (prompt, extra, completion) if c)
            return ColumnMap(prompt, completion, extra, layout=f"{layout} ({shown})")
    if "conversations" in names:
        turns = (first_row or {}).get("conversations")
        sharegpt = bool(turns) and isinstance(turns[0], dict) and "from" in turns[0]
        return ColumnMap(messages="conversations", sharegpt=sharegpt, layout="ShareGPT (conversations)")
    return None
