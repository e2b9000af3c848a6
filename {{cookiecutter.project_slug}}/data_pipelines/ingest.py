"""`make data`: the configured source (or a committed retraining request) -> a validated snapshot, or nothing.

The steps, in order: read the contract; if a retraining request is committed in the checkout,
rebuild exactly its snapshot (hash-checked, validated) and stop; else read the source, conform
its types to the contract, keep the contract's columns, validate the rows against the contract,
and write the content-addressed snapshot.
A retraining pull request's CI therefore trains on the new production data, and main keeps
building that snapshot after the merge until the next request replaces it.

Bad data never becomes a snapshot: before anything is written, the rows go through the same
Great Expectations suite `make validate` applies (generated from the contract,
data_pipelines/validation.py), and a failure writes no snapshot and moves no `latest`.
How it says no follows the command line's convention:

- exit 2 (InputError): there is no table of the contract's columns to check: the file is
  missing, empty, not a table, a broken CSV (a row with more or fewer fields than the
  header, named by line), larger than `max_file_mb` (data_pipelines/source.yaml), or it
  lacks a contract column;
- exit 1 (CheckFailed, `DataRefused`): the rows were read and broke the contract's rules
  (no rows, a target value outside its classes, inf or a word in a numeric column, ...):
  the same failure lines, naming the column, the rule and the values, that `make validate`
  prints, whose exit 1 says the same thing about a file or a snapshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from data_pipelines import snapshot, source, validation
from governance.core import progress
from governance.core.contract import Contract, ContractError
from governance.core.contract import load as load_contract
from governance.core.errors import CheckFailed, InputError
from governance.core.paths import Paths


class DataRefused(CheckFailed):
    """The rows failed the contract's validation, so no snapshot was written. Exit code 1."""


def contract_of(paths: Paths, path: Path | None = None) -> Contract:
    """The contract, with a hint for a project generated from a file that has no contract yet."""
    try:
        return load_contract(path or paths.contract)
    except ContractError as error:
        hint = (
            ""
            if path
            else "\nIf your data comes from a file, run `make contract` to draft the contract from it."
        )
        raise ContractError(f"{error}{hint}") from None


def pending_request(paths: Paths, explicit: Path | None, ignore: bool, other_data: bool) -> Path | None:
    """The retraining request `data` should honour, or None to use the configured source."""
    if ignore:
        return None
    if explicit is not None:
        return explicit
    if not snapshot.has_request(paths.retraining):
        return None
    if other_data:
        progress.note(
            f"a retraining request is in {paths.relative(paths.retraining)}; "
            "--input/--rows/--seed ask for other data"
        )
        return None
    return paths.retraining


def build_snapshot(
    paths: Paths,
    *,
    input_file: Path | None = None,
    rows: int | None = None,
    seed: int | None = None,
    request: Path | None = None,
    ignore_request: bool = False,
    snapshots: Path | None = None,
    contract_path: Path | None = None,
) -> Path:
    """Build the snapshot and point `latest` at it; returns its folder. Refuses bad data unwritten."""
    contract = contract_of(paths, contract_path)
    root = snapshots or paths.snapshots
    chosen = pending_request(paths, request, ignore_request, bool(input_file or rows or seed is not None))
    if chosen is not None:
        return from_request(chosen, contract, root, source.max_file_mb(paths))
    if input_file is not None:
        frame, origin = source.read_file(input_file, max_mb=source.max_file_mb(paths), contract=contract)
    else:
        frame, origin = source.load(source.read_config(paths), paths, rows, seed, contract)
    frame = snapshot.conform(frame, contract)
    frame, dropped = snapshot.select_contract_columns(frame, contract)
    if dropped:
        progress.note(f"left out columns the contract does not declare: {dropped}")
    missing = [column for column in contract.columns if column not in frame.columns]
    if missing:
        raise InputError(
            f"the data lacks contract columns {missing}: a snapshot holds every contract column "
            "(check the source, or the contract's column names)"
        )
    refuse_invalid(frame, contract, batch_name(origin))
    with progress.step(f"writing the snapshot of {len(frame)} rows"):
        return snapshot.create(frame, origin, contract=contract, root=root)


def batch_name(origin: dict[str, Any]) -> str:
    """What the validation calls the rows: the file's name, else the kind of source."""
    return Path(str(origin["path"])).stem if origin.get("path") else str(origin.get("kind") or "source")


def refuse_invalid(frame: pd.DataFrame, contract: Contract, name: str) -> None:
    """Validate the rows against the contract (the suite `make validate` runs); raise if they fail."""
    with progress.step(f"validating {len(frame)} rows against the contract before writing them"):
        outcome = validation.check_frame(frame, contract, name)
    if not outcome.success:
        raise DataRefused(
            "the data breaks the contract, so no snapshot was written; fix it at its source "
            f"(`make validate DATA=<file>` shows the same checks with Data Docs):\n{outcome.summary()}"
        )


def from_request(request: Path, contract: Contract, root: Path, max_mb: int = snapshot.MAX_FILE_MB) -> Path:
    """Rebuild the retraining request's snapshot (hash-checked, validated) instead of reading the source."""
    manifest = snapshot.read_request(request)
    progress.note(
        f"using the retraining request's snapshot {manifest['snapshot_id']} "
        f"({request / snapshot.REQUEST_DATA}); "
        "the configured source is not read while a request is in the checkout (--ignore-request reads it)"
    )
    # Not one step: the validation inside is a step of its own (steps do not nest).
    return snapshot.from_request(
        request,
        contract=contract,
        root=root,
        check=lambda frame: refuse_invalid(frame, contract, f"request-{manifest['snapshot_id']}"),
        max_mb=max_mb,
    )
