"""The scoring pipeline, one path for every way in:

rows (a `Dataset`, or a stream a window at a time) -> row checks -> TRL's own preparation, a window at a time,
with row ids -> the engine's length-sorted batches -> Parquet shards with markers (resume) -> each window's result
(statuses, truncation) -> the rows joined to their scores (a `Dataset`), or one Parquet part per window (a stream)
-> the warnings and provenance of `results.finish_run`.

Nothing holds every row in Python: a window of prepared rows lives as an Arrow table and results go to disk as they
are made.
"""

from pathlib import Path

import numpy as np
from datasets import Dataset, IterableDataset

from ..engine.finite import check_finite_weights
from ..engine.rows import check_rows, check_rows_windowed
from ..engine.scorer import scoring_mode
from ..engine.shards import ID
from ..provenance import PARTS_DIR
from ..schemas import ColumnMap
from .job import ScoringJob, prepare_window
from .results import Tally, finish_run, loss_on_prompt
from .setup import ScoringSetup
from .sinks import DatasetSink, PartsSink
from .source import WINDOW_ROWS, RowSource


def score(
    setup: ScoringSetup,
    rows: Dataset | IterableDataset,
    *,
    parts_dir: str | None = None,
    max_rows: int | None = None,
    reference: Dataset | str | None = None,
    mapping: ColumnMap | None = None,
) -> Dataset | IterableDataset:
    """What `ResonanceTrainer.score` returns (see there). `mapping`: how `rows` become TRL's columns when the
    caller has resolved it already (None: resolved here, `ScoringSettings.column_map`)."""
    check_finite_weights(setup.model)  # NaN weights would make every score NaN: refused before any compute
    settings = setup.settings
    mapping = mapping or settings.column_map(rows, setup.formatting_func)
    source = RowSource(rows, settings.column, max_rows, mapping)
    checked = None
    if source.sized:  # every row of a Dataset, before any compute
        checked = check_rows_windowed(
            source.mapped(), settings.text_field, WINDOW_ROWS, setup.formatting_func, setup.vocab_size
        )
    job = ScoringJob(setup, source.digest(), source.total, reference)
    if source.sized:
        sink = DatasetSink(source, job)
    else:
        folder = Path(parts_dir) if parts_dir else Path(settings.output_dir) / PARTS_DIR
        sink = PartsSink(folder, source, job, setup.provenance)
    on_prompt = loss_on_prompt(
        source.trl_columns, settings.text_field, settings.completion_only_loss, settings.assistant_only_loss
    )
    tally = Tally(settings.column)
    with job.claimed(), sink.open():
        for window, (offset, window_rows, trl_rows) in enumerate(source.windows()):
            if checked is not None:
                statuses = checked[offset : offset + len(window_rows)]
            else:
                statuses = check_rows(trl_rows, settings.text_field, setup.formatting_func, setup.vocab_size, offset)
            table = job.run_window(window, trl_rows, offset, statuses)
            tally.add(table, offset)
            sink.add(window, offset, window_rows, table)
        job.summary(tally.statuses)
        provenance = {**setup.provenance, **({"reference": job.reference.info} if job.reference else {})}
        if source.mapping is not None:
            provenance["columns_read_as"] = source.mapping.as_dict()
        scoring = finish_run(tally, provenance, max_length=settings.max_length, on_prompt=on_prompt, stacklevel=4)
        return sink.finish(scoring)


def losses(setup: ScoringSetup, rows: Dataset, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What `ResonanceTrainer.losses` returns (see there)."""
    n = len(rows)
    values, tokens = np.full(n, np.nan), np.zeros(n, dtype=np.int64)
    scorer = setup.scorer(batch_size)
    plain = rows.with_format(None)
    mapping = setup.settings.column_map(plain, setup.formatting_func)
    plain = mapping.apply(plain) if mapping else plain
    for window, start in enumerate(range(0, n, WINDOW_ROWS)):
        window_rows = plain.select(range(start, min(n, start + WINDOW_ROWS)))
        prepared = prepare_window(setup, window_rows, start, list(range(len(window_rows))))
        if not prepared.num_rows:
            continue
        plan = scorer.plan(prepared, window)
        with scoring_mode(scorer.model, scorer.targets):
            for batches in plan.shards:
                for batch in batches:
                    part = plan.rows(batch)
                    loss, counts = scorer.loss_batch(part)
                    for row, value, count in zip(part, loss, counts):
                        values[row[ID]], tokens[row[ID]] = value, count
    return values, tokens
