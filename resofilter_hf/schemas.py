"""Datasets whose columns have other names than TRL's: mapped to prompt/completion or messages, said in one line.

TRL trains on `prompt`/`completion`, `messages`, a text field or `input_ids`. Users' data comes as GSM8K's
`question`/`answer`, Alpaca's `instruction`/`input`/`output`, MetaMathQA's `query`/`response`, MATH's
`problem`/`solution` or ShareGPT's `conversations` of `from`/`value` turns. Those layouts are recognised and read as
TRL's with a notice; any other is mapped with `prompt_column`/`completion_column` (or `messages_column`), and a
dataset that fits nothing is refused with the columns found and the options to use. The user's rows are never
changed: scores come back beside their own columns; only what TRL prepares sees the mapped ones.
"""

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from datasets import Dataset, IterableDataset

from .engine.rows import dataset_kind
from .provenance import read_provenance


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

    def as_dict(self) -> dict:
        """What the provenance keeps (`columns_read_as`), so later steps read the rows as TRL did."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, False)}

    @classmethod
    def from_dict(cls, value) -> "ColumnMap | None":
        """The mapping a provenance recorded (None for none, or for what this library did not write)."""
        if not isinstance(value, dict) or not all(isinstance(v, (str, bool)) for v in value.values()):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})

    def columns_after(self, names: Sequence[str]) -> list[str]:
        """The column names `apply` leaves: the mapped ones replaced by TRL's."""
        used = {self.prompt, self.completion, self.prompt_extra, self.messages} - {None}
        new = ["messages"] if self.messages else ["prompt", "completion"]
        return [n for n in names if n not in used and n not in new] + new

    def apply(self, rows: Dataset | IterableDataset, offset: int = 0) -> Dataset | IterableDataset:
        """`rows` with TRL's columns instead of the mapped ones (other columns kept; a column already named like
        one of TRL's is replaced). A plain pair is a rename; otherwise one batched pass. Errors name the row by
        its index plus `offset` (a stream's window)."""
        names = rows.column_names or []
        used = [c for c in (self.prompt, self.completion, self.prompt_extra, self.messages) if c]
        stale = [c for c in ("prompt", "completion", "messages") if c in names and c not in used]
        rows = rows.remove_columns(stale) if stale else rows
        if not self.prompt_extra and not self.sharegpt:
            renames = (
                {self.messages: "messages"}
                if self.messages
                else {self.prompt: "prompt", self.completion: "completion"}
            )
            return rows.rename_columns({old: new for old, new in renames.items() if old != new})
        kwargs = {"desc": "Mapping columns"} if isinstance(rows, Dataset) else {}
        return rows.map(
            self._batch, batched=True, with_indices=True, fn_kwargs={"offset": offset},
            remove_columns=[c for c in used if c in (rows.column_names or used)], **kwargs,
        )  # fmt: skip

    def _batch(self, batch: dict, indices: list[int], offset: int) -> dict:
        if self.messages:
            turns = batch[self.messages]
            return {
                "messages": [[_turn(t, offset + i, self.messages) for t in chat] for i, chat in zip(indices, turns)]
            }
        prompts, extras = batch[self.prompt], batch[self.prompt_extra]
        joined = [
            f"{p}\n\n{e}" if isinstance(p, str) and isinstance(e, str) and e.strip() else p
            for p, e in zip(prompts, extras)
        ]
        return {"prompt": joined, "completion": batch[self.completion]}


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
        return _explicit(names, prompt_column, completion_column, messages_column, text_field)
    if _trl_layout(names, text_field):
        return None
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


def _explicit(
    names: list[str], prompt: str | None, completion: str | None, messages: str | None, text_field: str
) -> ColumnMap | None:
    if messages and (prompt or completion):
        raise ValueError("Give either `messages_column` or `prompt_column` and `completion_column`, not both.")
    if not messages and not (prompt and completion):
        given = "prompt_column" if prompt else "completion_column"
        raise ValueError(f"`{given}` needs its pair: give both `prompt_column` and `completion_column`.")
    options = (("prompt_column", prompt), ("completion_column", completion), ("messages_column", messages))
    missing = [(option, column) for option, column in options if column and column not in names]
    if missing and _trl_layout(names, text_field):  # another set (eval, reference) already in TRL's layout
        return None
    if missing:
        option, column = missing[0]
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


def _trl_layout(names: list[str], text_field: str) -> bool:
    try:
        dataset_kind(names, text_field)
    except ValueError:
        return False
    return True


def recorded_map(dataset: Dataset) -> "ColumnMap | None":
    """The mapping `dataset`'s scoring provenance recorded (`columns_read_as`), if its columns are still there."""
    mapping = ColumnMap.from_dict((read_provenance(dataset).get("scoring") or {}).get("columns_read_as"))
    needed = [c for c in (mapping.prompt, mapping.completion, mapping.messages) if c] if mapping else []
    return mapping if mapping and all(c in dataset.column_names for c in needed) else None


def trl_column_names(dataset: Dataset) -> list[str]:
    """The column names of `trl_view(dataset)`, without mapping any row."""
    mapping = recorded_map(dataset)
    return mapping.columns_after(dataset.column_names) if mapping else list(dataset.column_names)


def trl_view(dataset: Dataset) -> Dataset:
    """`dataset` as TRL read it: the mapping its scoring provenance recorded (`columns_read_as`) applied, so
    selection, baselines, sweeps and the report find `prompt`/`completion`/`messages` where the user's names were.
    The rows are the same, one for one; a dataset without a recorded mapping comes back as it is."""
    recorded = (read_provenance(dataset).get("scoring") or {}).get("columns_read_as")
    mapping = ColumnMap.from_dict(recorded)
    if mapping is None or not all(
        c in dataset.column_names for c in (mapping.prompt, mapping.completion, mapping.messages) if c
    ):
        return dataset
    return mapping.apply(dataset)
