"""`make data`: the configured source (or a committed retraining request) -> a validated-shape snapshot.

The steps, in order: read the contract; if a retraining request is committed in the checkout,
rebuild exactly its snapshot (hash-checked) and stop; else read the source, conform its types
to the contract, keep the contract's columns, and write the content-addressed snapshot.
A retraining pull request's CI therefore trains on the new production data, and main keeps
building that snapshot after the merge until the next request replaces it.
"""

from __future__ import annotations

from pathlib import Path

from data_pipelines import snapshot, source
from governance.core import progress
from governance.core.contract import Contract, ContractError
from governance.core.contract import load as load_contract
from governance.core.errors import InputError
from governance.core.paths import Paths


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
    """Build the snapshot and point `latest` at it; returns its folder."""
    contract = contract_of(paths, contract_path)
    root = snapshots or paths.snapshots
    chosen = pending_request(paths, request, ignore_request, bool(input_file or rows or seed is not None))
    if chosen is not None:
        return from_request(chosen, contract, root)
    if input_file is not None:
        frame, origin = source.read_file(input_file)
    else:
        frame, origin = source.load(source.read_config(paths), paths, rows, seed)
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
    with progress.step(f"writing the snapshot of {len(frame)} rows"):
        return snapshot.create(frame, origin, contract=contract, root=root)


def from_request(request: Path, contract: Contract, root: Path) -> Path:
    """Rebuild the retraining request's snapshot (hash-checked) instead of reading the source."""
    manifest = snapshot.read_request(request)
    progress.note(
        f"using the retraining request's snapshot {manifest['snapshot_id']} "
        f"({request / snapshot.REQUEST_DATA}); "
        "the configured source is not read while a request is in the checkout (--ignore-request reads it)"
    )
    with progress.step(f"rebuilding snapshot {manifest['snapshot_id']} from the request"):
        return snapshot.from_request(request, contract=contract, root=root)
