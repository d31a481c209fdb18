"""How a scored or selected dataset was made, carried on the dataset itself.

Provenance rides in `Dataset.info.description` (one line, ``resofilter-hf: {json}``) because `DatasetInfo`
survives `filter`, `select`, `sort`, `map` and `add_column`, so a card written later still knows which model,
transform and selection rule produced the rows. The rest of the description is left as the user wrote it.
"""

import copy
import json
from typing import Any

from datasets import Dataset


MARKER = "resofilter-hf: "


def read_provenance(dataset: Dataset) -> dict[str, Any]:
    """The provenance dict stored on `dataset` ({} when there is none)."""
    for line in reversed((dataset.info.description or "").splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    return {}


def with_provenance(dataset: Dataset, **sections: Any) -> Dataset:
    """A shallow copy of `dataset` whose provenance has `sections` merged in (top-level keys replaced)."""
    merged = {**read_provenance(dataset), **sections}
    text = json.dumps(merged, sort_keys=True, default=str)
    kept = [line for line in (dataset.info.description or "").splitlines() if not line.startswith(MARKER)]
    out = copy.copy(dataset)
    out._info = copy.deepcopy(dataset.info)
    out._info.description = "\n".join([*kept, MARKER + text])
    return out
