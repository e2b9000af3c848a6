"""Captured production rows become training data only through the data pipeline's own gates.

The labelled rows of a capture window are shaped into the contract's columns (plus
event_time), validated with the same Great Expectations suite as every other batch
(`data_pipelines.validation`), and only if that passes written, with the rows the policy
adds, as a content-addressed snapshot (`data_pipelines.snapshot.create`). A window that fails
is reported with the validation's own failure lines and never becomes a snapshot, so it
cannot be trained on.

What else the snapshot holds is a policy choice (`retrain.data` in governance/policy.yaml):
- `reference_and_window` (default): the champion's reference snapshot's training rows (already
  validated when that snapshot was made) plus the window. Earlier data is kept, so a window
  skewed by drift or by poisoned feedback labels cannot replace what the model knew.
- `window`: the window alone.
- `sliding`: the window segments of the last `retrain.sliding_snapshots` retraining snapshots
  found in artifacts/snapshots/ plus the window.
Whatever the choice, the snapshot starts with the reference hold-out slice: the reference
snapshot's own test split (ml/params.yaml's seed and test_size, exactly the rows the champion
was scored on and not trained on). Training (ml/pipeline.py) never fits on it; it scores the
candidate there too, so a model that learned only the drifted window cannot pass on the window
alone. The main held-out split is drawn from the window segment only, so the champion
re-scored on it meets current production rows neither model was fitted on.

The manifest's `source` records the choice and each segment (`DataSegment`: source, rows, the
snapshot it came from) in row order. The snapshot is content-addressed, so the retraining pull
request, its CI run and main after the merge all rebuild the same rows and the same segments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from data_pipelines import snapshot, validation
from governance.core.contract import Contract
from governance.core.errors import InputError
from governance.core.records import REFERENCE_HOLDOUT, WINDOW_SEGMENT, DataSegment, NewDataset

if TYPE_CHECKING:  # scikit-learn comes with ml/: the drift check's own process never needs it
    from ml.train import Params


@dataclass(frozen=True)
class Sources:
    """What the policy adds to the window: its choice and the rows it draws on."""

    choice: str  # retrain.data
    reference: pd.DataFrame  # the champion's training snapshot
    reference_id: str | None
    params: Params  # seed and test_size: the reference's own split
    manifest: dict[str, Any] = field(default_factory=dict)  # the reference's: its segments, if any
    sliding_snapshots: int = 3


def reference_parts(sources: Sources, contract: Contract) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """The reference snapshot split as training split it: (training rows, hold-out rows, note).

    For a snapshot that was itself a retraining set, the hold-out is its own reference hold-out
    plus its window's test split: every row the champion was scored on and not fitted on.
    """
    from ml.pipeline import split_snapshot

    reference = sources.reference.reset_index(drop=True)
    try:
        parts = split_snapshot(reference, sources.manifest, contract, sources.params)
    except InputError as error:  # too few rows of a class to split: no hold-out, said so
        return reference, reference.iloc[0:0], f"no reference hold-out slice: {error}"
    held = [frame for frame in (parts.reference, parts.split.test) if frame is not None]
    return parts.split.train, pd.concat(held), None


def earlier_windows(root: Path, contract: Contract, count: int) -> list[tuple[str, pd.DataFrame]]:
    """The window segments of the `count` newest retraining snapshots under this contract."""
    found = []
    for path in root.glob("*/manifest.json"):
        manifest = json.loads(path.read_text())
        origin = manifest.get("source")
        if not isinstance(origin, dict) or not origin.get("segments"):
            continue
        if manifest.get("contract_sha256") != (contract.digest or None):
            continue
        found.append((str(manifest.get("created_at") or ""), path.parent.name, origin["segments"]))
    windows = []
    for _, snapshot_id, segments in sorted(found, reverse=True)[:count]:
        frame, _ = snapshot.load(root / snapshot_id)
        start = 0
        for segment in (DataSegment.model_validate(item) for item in segments):
            if segment.source == WINDOW_SEGMENT:
                windows.append((snapshot_id, frame.iloc[start : start + segment.rows]))
            start += segment.rows
    return windows


def training_rows(
    batch: pd.DataFrame, contract: Contract, sources: Sources, root: Path
) -> tuple[pd.DataFrame, list[DataSegment], list[str]]:
    """The snapshot's rows in segment order: reference hold-out, what the policy adds, the window."""
    train, holdout, note = reference_parts(sources, contract)
    parts = [
        (DataSegment(source=REFERENCE_HOLDOUT, rows=len(holdout), snapshot_id=sources.reference_id), holdout)
    ]
    if sources.choice == "reference_and_window":
        parts.append(
            (DataSegment(source="reference", rows=len(train), snapshot_id=sources.reference_id), train)
        )
    elif sources.choice == "sliding":
        for snapshot_id, rows in earlier_windows(root, contract, sources.sliding_snapshots):
            parts.append((DataSegment(source="snapshot", rows=len(rows), snapshot_id=snapshot_id), rows))
    parts.append((DataSegment(source=WINDOW_SEGMENT, rows=len(batch)), batch))
    frames = [frame for segment, frame in parts if segment.rows]
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else batch
    return snapshot.conform(rows, contract), [segment for segment, _ in parts], [note] if note else []


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


@dataclass(frozen=True)
class Candidate:
    """The window's labelled rows the snapshot takes, and how many the window had."""

    batch: pd.DataFrame
    labelled: int
    notes: tuple[str, ...] = ()


def candidate(window: pd.DataFrame, contract: Contract, max_rows: int | None = None) -> Candidate:
    """The labelled rows in the contract's shape; of more than `max_rows`, the newest `max_rows`.

    Why a bound (policy `retrain.max_window_rows`): the retraining pull request trains on the
    snapshot in CI, and a window of millions of labelled rows would both swamp the reference rows
    and outlast the runner. The newest rows are the ones that show what changed.
    """
    target = contract.target.name
    positions = np.flatnonzero(window[target].notna().to_numpy()) if target in window else np.arange(0)
    labelled = len(positions)
    if max_rows is None or labelled <= max_rows:
        return Candidate(labelled_rows(window.iloc[positions], contract), labelled)
    # Chosen by position before any row is shaped: only the rows kept are copied.
    newest = window["timestamp"].iloc[positions].argsort(kind="stable").to_numpy()[labelled - max_rows :]
    note = (
        f"the window has {labelled} labelled rows; the snapshot takes the newest {max_rows} "
        f"(policy retrain.max_window_rows), {labelled - max_rows} older ones stay in the capture only"
    )
    return Candidate(labelled_rows(window.iloc[positions[newest]], contract), labelled, (note,))


def build(
    window: pd.DataFrame,
    contract: Contract,
    source: dict[str, Any],
    reports: Path,
    snapshots: Path,
    min_rows: int = 1,
    sources: Sources | None = None,
    max_rows: int | None = None,
) -> NewDataset:
    """Validate the labelled window (at most `max_rows` of it), then snapshot it with what `sources`
    adds; returns what happened. Without `sources` the snapshot is the window alone and its manifest
    records no segments."""
    rows = candidate(window, contract, max_rows)
    checked = validate_candidate(rows, contract, source, reports, min_rows)
    if not checked.valid:
        return checked
    return snapshot_candidate(rows, checked, contract, source, snapshots, sources)


def validate_candidate(
    rows: Candidate, contract: Contract, source: dict[str, Any], reports: Path, min_rows: int = 1
) -> NewDataset:
    """The candidate rows through the data pipeline's own suite: valid (nothing written but the
    validation's reports) or the reasons they are not. monitoring/snapshot_worker.py runs this
    before the check has decided, and `snapshot_candidate` only once it says retrain."""
    batch = rows.batch
    if rows.labelled < min_rows:
        return NewDataset(
            valid=False,
            rows=rows.labelled,
            errors=(f"{rows.labelled} labelled rows, fewer than the {min_rows} needed to train on",),
        )
    start = batch[snapshot.EVENT_TIME].min()
    name = f"capture-{start:%Y%m%dT%H%M%S}-{len(batch)}" if pd.notna(start) else f"capture-{len(batch)}"
    outcome = validation.validate_frame(
        batch, contract, name, reports, source=json.dumps(source), data_docs=True
    )
    errors: tuple[str, ...] = ()
    if not outcome.success:
        errors = tuple(failure.line().strip() for failure in outcome.failures) or (outcome.summary(),)
    return NewDataset(
        valid=outcome.success,
        rows=len(batch),
        errors=errors,
        validation=str(outcome.result_path) if outcome.result_path else None,
        data_docs=str(outcome.data_docs) if outcome.data_docs else None,
        notes=rows.notes,
    )


def snapshot_candidate(
    rows: Candidate,
    checked: NewDataset,
    contract: Contract,
    source: dict[str, Any],
    snapshots: Path,
    sources: Sources | None = None,
) -> NewDataset:
    """The validated candidate rows, with what `sources` adds, written as a content-addressed snapshot."""
    batch = rows.batch
    labelled = {"labelled_rows": rows.labelled, "rows_taken": len(batch)} if rows.notes else {}
    rows_out, origin = batch, {**source, **labelled}
    if sources is not None:
        rows_out, segments, notes = training_rows(batch, contract, sources, snapshots)
        origin = {
            "kind": "retraining",
            "data": sources.choice,
            "capture": {**source, **labelled},
            "segments": [segment.model_dump(mode="json") for segment in segments],
            **({"notes": notes} if notes else {}),
        }
    folder = snapshot.create(rows_out, origin, contract=contract, root=snapshots)
    manifest = json.loads((folder / "manifest.json").read_text())
    return checked.model_copy(update={"rows": len(rows_out), "manifest": manifest, "path": str(folder)})
