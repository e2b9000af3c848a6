"""Command line for the data side: ``python -m data_pipelines.cli data|validate|contract``.

The Makefile targets ``data``, ``validate`` and ``contract`` call this, and so does CI. Exit
codes are part of the interface: 0 success, 1 the data failed validation, 2 the request
could not be carried out (bad arguments, missing file or snapshot, an invalid contract).

``data`` honours a retraining request committed in the checkout (governance/retraining/ by
default, as monitoring/monitoring.yaml's retraining.request_dir says): it then rebuilds the
request's snapshot instead of reading the configured source, so a retraining pull request's
CI trains on the new production data, and main after the merge keeps building that snapshot.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from data_pipelines import contract as contract_module
from data_pipelines.contract import Contract, ContractError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCE_CONFIG = Path(__file__).with_name("source.yaml")
DEFAULT_REQUEST_DIR = "governance/retraining"
OK, FAILED, USAGE = 0, 1, 2
DEFAULT_ROWS = 10000
SNAPSHOT_FILES = ("data.parquet", "manifest.json")


class UsageError(Exception):
    """Something the user has to fix before the command can run; the message says what."""


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout carries only results (a draft contract can be redirected)."""
    print(f"==> {message}", file=sys.stderr, flush=True)


def read_source(path: Path = SOURCE_CONFIG) -> dict[str, Any]:
    """The configured data source: the example generator or a file under data/raw/."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read the data source config {path}: {error}") from None
    if not isinstance(config, dict) or config.get("kind") not in ("example", "file"):
        raise UsageError(f"{path}: field 'kind' must be 'example' or 'file' (got {config!r})")
    if config["kind"] == "file" and not config.get("path"):
        raise UsageError(f"{path}: field 'path' is required when kind is 'file'")
    for key, low in (("rows", 1), ("seed", 0)):
        value = config.get(key, low)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UsageError(f"{path}: field '{key}' must be an integer >= {low} (got {value!r})")
    return config


def load_contract(path: str | None) -> Contract:
    location = Path(path) if path else contract_module.CONTRACT_PATH
    try:
        return contract_module.load(location)
    except ContractError as error:
        hint = ""
        if not path:
            hint = "\nIf your data comes from a file, run `make contract` to draft the contract from it."
        raise UsageError(f"{_shown(location)}: {error}{hint}") from None


def _source_frame(args: argparse.Namespace, config: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    from data_pipelines import example, snapshot

    if args.input:
        path = Path(args.input)
        progress(f"reading {path}")
        frame = snapshot.read_table(path)
        return frame, {"kind": "file", "path": str(path), "file_sha256": _file_sha256(path)}
    if config["kind"] == "example":
        rows = args.rows or config.get("rows", DEFAULT_ROWS)
        seed = config.get("seed", 0) if args.seed is None else args.seed
        progress(f"generating {rows} example loan applications (seed {seed})")
        frame = example.generate(rows, seed=seed)
        return frame, {"kind": "example", "generator": "data_pipelines.example", "rows": rows, "seed": seed}
    path = PROJECT_ROOT / config["path"]
    progress(f"reading {config['path']}")
    frame = snapshot.read_table(path)
    return frame, {"kind": "file", "path": str(config["path"]), "file_sha256": _file_sha256(path)}


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def request_dir(root: Path | None = None) -> Path:
    """The folder a committed retraining request lives in (monitoring.yaml, else the default).

    monitoring.yaml is read as a plain file: this domain imports no other.
    """
    root = root or PROJECT_ROOT
    settings = root / "monitoring" / "monitoring.yaml"
    configured = (_raw_yaml(settings).get("retraining") or {}) if settings.is_file() else {}
    return root / str(configured.get("request_dir") or DEFAULT_REQUEST_DIR)


def _request(args: argparse.Namespace) -> Path | None:
    """The retraining request `data` should honour, or None to use the configured source."""
    from data_pipelines import snapshot

    if args.ignore_request:
        return None
    if args.request:
        return Path(args.request)
    folder = request_dir()
    if not snapshot.has_request(folder):
        return None
    if args.input or args.rows or args.seed is not None:
        progress(f"a retraining request is in {_shown(folder)}; --input/--rows/--seed ask for other data")
        return None
    return folder


def command_data(args: argparse.Namespace) -> int:
    """Build a snapshot from the configured source (or --input, or a retraining request) and point
    `latest` at it."""
    from data_pipelines import snapshot

    contract = load_contract(args.contract)
    request = _request(args)
    if request is not None:
        return _data_from_request(request, contract, args.snapshots or snapshot.SNAPSHOTS)
    frame, source = _source_frame(args, read_source())
    frame = snapshot.conform(frame, contract)
    frame, dropped = snapshot.select_contract_columns(frame, contract)
    if dropped:
        progress(f"left out columns the contract does not declare: {dropped}")
    missing = [column for column in contract.columns if column not in frame.columns]
    if missing:
        print(
            f"WARNING: the data lacks contract columns {missing}; `make validate` will fail", file=sys.stderr
        )
    started = time.monotonic()
    folder = snapshot.create(frame, source, contract=contract, root=args.snapshots or snapshot.SNAPSHOTS)
    _report(folder, started)
    return OK


def _data_from_request(request: Path, contract: Contract, root: str | Path) -> int:
    """Rebuild the retraining request's snapshot (hash-checked) instead of reading the source."""
    from data_pipelines import snapshot

    wanted = snapshot.read_request(request)["snapshot_id"]
    progress(
        f"using the retraining request's snapshot {wanted} ({_shown(request / snapshot.REQUEST_DATA)}); "
        "the configured source is not read while a request is in the checkout (--ignore-request reads it)"
    )
    started = time.monotonic()
    folder = snapshot.from_request(request, contract=contract, root=root)
    _report(folder, started)
    print(f"    request:     {_shown(request)} (retraining request, content hash verified)")
    return OK


def _report(folder: Path, started: float) -> None:
    from data_pipelines import snapshot

    _, manifest = snapshot.load(folder)
    window = manifest["time_window"]
    progress(
        f"snapshot {manifest['snapshot_id']}: {manifest['rows']} rows in {time.monotonic() - started:.1f}s"
    )
    print(f"    folder:      {_shown(folder)}")
    print(f"    sha256:      {manifest['sha256']}")
    if window["start"]:
        print(f"    time window: {window['start']} .. {window['end']}")
    else:
        print("    time window: unknown (the data has no event_time column)")


def command_validate(args: argparse.Namespace) -> int:
    """Validate --data (a CSV/Parquet file or a snapshot folder) or the latest snapshot."""
    from data_pipelines import snapshot, validation

    contract = load_contract(args.contract)
    reports = Path(args.reports) if args.reports else validation.REPORTS
    data = Path(args.data) if args.data else None
    started = time.monotonic()
    if data is not None and not data.is_dir() and data.name not in SNAPSHOT_FILES:
        progress(f"validating {data} against the contract with Great Expectations (a few seconds)")
        outcome = validation.validate_file(data, contract, reports)
    else:
        frame, manifest = snapshot.load(data or snapshot.LATEST, root=args.snapshots or snapshot.SNAPSHOTS)
        name = manifest["snapshot_id"]
        progress(
            f"validating snapshot {name} ({manifest['rows']} rows) with Great Expectations (a few seconds)"
        )
        outcome = validation.validate_frame(frame, contract, name, reports, source=f"snapshot {name}")
    elapsed = time.monotonic() - started
    stream = sys.stdout if outcome.success else sys.stderr
    print(outcome.summary(), file=stream)
    if outcome.data_docs:
        print(f"    Data Docs:   {_shown(outcome.data_docs)}")
    if outcome.result_path:
        print(f"    JSON result: {_shown(outcome.result_path)}  ({elapsed:.1f}s)")
    return OK if outcome.success else FAILED


def command_contract(args: argparse.Namespace) -> int:
    """Infer a draft contract; print it, or write it (refusing to clobber a real contract)."""
    from data_pipelines import infer, snapshot

    config = read_source()
    if args.data:
        path = Path(args.data)
        frame, shown = snapshot.read_table(path), str(path)
    elif config["kind"] == "file":
        frame, shown = snapshot.read_table(PROJECT_ROOT / config["path"]), str(config["path"])
    else:
        from data_pipelines import example

        frame, shown = (
            example.generate(config.get("rows", DEFAULT_ROWS), seed=config.get("seed", 0)),
            "the example data",
        )
    target = args.target or config.get("target_column")
    sensitive = args.sensitive if args.sensitive is not None else config.get("sensitive_attribute")
    if not target:
        raise UsageError("no target column: pass --target or set target_column in data_pipelines/source.yaml")
    progress(f"inferring a draft contract from {shown} ({len(frame)} rows)")
    output = Path(args.output) if args.output else contract_module.CONTRACT_PATH
    text = infer.infer(frame, target, sensitive or None, dataset=_dataset(output), source=shown)
    contract_module.parse(yaml.safe_load(text))  # never hand out a draft the loader would reject
    if not args.write:
        print(text, end="")
        return OK
    if output.exists() and not args.force and _declares_features(output):
        raise UsageError(
            f"{_shown(output)} already declares features; not overwriting a reviewed contract. "
            "Print the draft with `python -m data_pipelines.cli contract`, "
            "or pass --force (make contract FORCE=1)."
        )
    output.write_text(text)
    progress(f"wrote the draft contract to {_shown(output)}: review it, then commit it")
    return OK


def _raw_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _declares_features(path: Path) -> bool:
    return bool(_raw_yaml(path).get("features"))


def _dataset(path: Path) -> str:
    """Keep the dataset name the project was generated with."""
    return str(_raw_yaml(path).get("dataset") or "dataset")


def _shown(path: Path) -> str:
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _positive(text: str) -> int:
    value = _natural(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {text})")
    return value


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative (got {text})")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m data_pipelines.cli", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help=command_data.__doc__)
    data.add_argument("--input", help="ingest this CSV/Parquet instead of the configured source")
    data.add_argument(
        "--rows", type=_positive, help="example source: number of rows (default from source.yaml)"
    )
    data.add_argument(
        "--seed", type=_natural, help="example source: generator seed (default from source.yaml)"
    )
    data.add_argument(
        "--request",
        help=f"rebuild the snapshot of the retraining request in this folder "
        f"(default: {DEFAULT_REQUEST_DIR}/ when it holds one)",
    )
    data.add_argument(
        "--ignore-request",
        action="store_true",
        help="build from the configured source even when a retraining request is in the checkout",
    )
    validate = commands.add_parser("validate", help=command_validate.__doc__)
    validate.add_argument(
        "--data", help="a CSV/Parquet file or a snapshot folder (default: the latest snapshot)"
    )
    validate.add_argument("--reports", help="where Data Docs and the JSON result go (default: reports/)")
    contract = commands.add_parser("contract", help=command_contract.__doc__)
    contract.add_argument("--data", help="a CSV/Parquet file (default: the configured source)")
    contract.add_argument("--target", help="target column (default: target_column in source.yaml)")
    contract.add_argument(
        "--sensitive", help="sensitive attribute column ('' for none; default from source.yaml)"
    )
    contract.add_argument("--write", action="store_true", help="write the draft instead of printing it")
    contract.add_argument("--output", help="where --write puts it (default: data_pipelines/contract.yaml)")
    contract.add_argument("--force", action="store_true", help="overwrite a contract that declares features")
    for sub in (data, validate):
        sub.add_argument("--contract", help="contract file (default: data_pipelines/contract.yaml)")
        sub.add_argument("--snapshots", help="snapshot root (default: artifacts/snapshots)")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handlers = {"data": command_data, "validate": command_validate, "contract": command_contract}
    from data_pipelines.infer import InferenceError
    from data_pipelines.snapshot import InputError, SnapshotError, UnreadableBatch

    try:
        return handlers[args.command](args)
    except (UsageError, InputError, SnapshotError, UnreadableBatch, InferenceError, ContractError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return USAGE


if __name__ == "__main__":
    sys.exit(main())
