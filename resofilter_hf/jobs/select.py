"""The job behind `resofilter select`: a scored file in, the kept rows out. Needs the datasets stack, not TRL."""

import os
from pathlib import Path

from ..engine.files import check_not_input
from ..provenance import check_table_suffix, load_scored, read_provenance, write_table
from ..selection import select_by_resonance
from .usage import usage_errors


def run_select(source: str | os.PathLike, output: str | os.PathLike, **options) -> tuple[Path, dict]:
    """Select from a scored file with `select_by_resonance(**options)` into `output` (.parquet with the selection
    in its metadata, .jsonl or .csv); returns the path and the counts. An output of no known format, or one that
    would overwrite the source, is a `UsageError`, raised before the source is read; so is an option naming a column
    the file does not hold."""
    with usage_errors():
        check_table_suffix(output)
        check_not_input(output, [source])
    with usage_errors(given=options):  # --column, --dedup-on, --stratify-by naming no column of the file
        selected = select_by_resonance(load_scored(source), **options)
    provenance = read_provenance(selected)
    return write_table(selected, output, provenance), provenance["selection"]
