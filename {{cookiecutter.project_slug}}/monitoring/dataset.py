"""Captured production rows become training data only through the data pipeline's own gates.

The labelled rows of a capture window are shaped into the contract's columns (plus
event_time), validated with the same Great Expectations suite as every other batch
(`data_pipelines.validation`), and only if that passes written as a content-addressed
snapshot (`data_pipelines.snapshot.create`). A window that fails is reported with the
validation's own failure lines and never becomes a snapshot, so it cannot be trained on.

That snapshot is the whole retraining set (`data_pipelines.snapshot.RETRAINING_SET`): the
labelled window alone, not the champion's training data plus the window. The candidate's
held-out split is then current production data that neither model was fitted on, so the
champion re-scored on it is compared like for like; a random split of the union would hold
out rows the champion was trained on and favour it. The snapshot is content-addressed, so
the retraining pull request, its CI run and main after the merge all rebuild the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from data_pipelines import snapshot, validation
from governance.core.contract import Contract
from governance.core.records import NewDataset


def labelled_rows(window: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The window's labelled rows as a batch in the contract's shape: what a snapshot holds."""
    target = contract.target.name
    rows = window[window[target].notna()] if target in window else window.iloc[0:0]
    batch: dict[str, Any] = {}
    for feature in contract.features:
        column = rows[feature.name]
        if feature.is_numeric:
            batch[feature.name] = pd.to_numeric(column).astype("float64")
        else:
            batch[feature.name] = column.astype(object).where(column.notna(), None)
    batch[target] = target_values(rows[target], contract)
    if contract.sensitive and contract.sensitive.name in rows:
        column = rows[contract.sensitive.name]
        batch[contract.sensitive.name] = column.astype(object).where(column.notna(), None)
    batch[snapshot.EVENT_TIME] = rows["timestamp"]
    frame = pd.DataFrame(batch).reset_index(drop=True)
    # JSON numbers arrive as floats: give integer features their contract type back (pipeline rule).
    return snapshot.conform(frame, contract)


def target_values(column: pd.Series, contract: Contract) -> pd.Series:
    """The labels as a data file holds them: the contract's class values (words stay words,
    booleans booleans, integers int64), or float64 numbers for regression."""
    target = contract.target
    if not target.is_classification:
        return pd.to_numeric(column).astype("float64")
    if target.dtype == "int64":
        return column.astype("int64")
    if target.dtype == "bool":
        return column.astype(bool)
    return column.astype(object)


def build(
    window: pd.DataFrame,
    contract: Contract,
    source: dict[str, Any],
    reports: Path,
    snapshots: Path,
    min_rows: int = 1,
) -> NewDataset:
    """Validate the labelled window, then snapshot it; returns what happened, for the reports."""
    batch = labelled_rows(window, contract)
    if len(batch) < min_rows:
        return NewDataset(
            valid=False,
            rows=len(batch),
            errors=(f"{len(batch)} labelled rows, fewer than the {min_rows} needed to train on",),
        )
    start = batch[snapshot.EVENT_TIME].min()
    name = f"capture-{start:%Y%m%dT%H%M%S}-{len(batch)}" if pd.notna(start) else f"capture-{len(batch)}"
    outcome = validation.validate_frame(
        batch, contract, name, reports, source=json.dumps(source), data_docs=True
    )
    checked = {
        "validation": str(outcome.result_path) if outcome.result_path else None,
        "data_docs": str(outcome.data_docs) if outcome.data_docs else None,
    }
    if not outcome.success:
        errors = tuple(failure.line().strip() for failure in outcome.failures) or (outcome.summary(),)
        return NewDataset(valid=False, rows=len(batch), errors=errors, **checked)
    folder = snapshot.create(batch, source, contract=contract, root=snapshots)
    manifest = json.loads((folder / "manifest.json").read_text())
    return NewDataset(valid=True, rows=len(batch), manifest=manifest, path=str(folder), **checked)
