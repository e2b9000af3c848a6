"""MAKE IT YOURS (seam 5): where `make data` takes the training data from.

Out of the box the source is the seeded example generator or the file the project was
generated with (data_pipelines/source.yaml says which). To read from your warehouse, a feature
store or an object store, change `load` to return your rows as a pandas DataFrame with the
contract's columns (plus an optional `event_time`), and describe the source in the returned
mapping: it is written into every snapshot's manifest as lineage. Then run
`make data validate train` to see the new data go through the contract's gates: whatever
`load` returns is validated against the contract before a snapshot is written, and refused
(nothing written) when it breaks a rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from data_pipelines.snapshot import MAX_FILE_MB, read_table
from governance.core import progress
from governance.core.contract import Contract
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import Record, parse, read_yaml, sha256_of


class SourceConfig(Record):
    """data_pipelines/source.yaml."""

    kind: Literal["example", "file"]
    path: str | None = None  # kind: file, relative to the project
    rows: int = Field(10000, ge=1, strict=True)  # kind: example
    seed: int = Field(0, ge=0, strict=True)  # kind: example
    target_column: str | None = None
    sensitive_attribute: str | None = None
    # Any data file `make data`, `make validate` or `make contract` reads: larger is refused unread.
    max_file_mb: int = Field(MAX_FILE_MB, ge=1, strict=True)


def read_config(paths: Paths) -> SourceConfig:
    config = parse(SourceConfig, read_yaml(paths.source, "data source config", InputError), str(paths.source))
    if config.kind == "file" and not config.path:
        raise InputError(f"{paths.source}: field 'path' is required when kind is 'file'")
    return config


def max_file_mb(paths: Paths) -> int:
    """The size limit of a data file, in MiB: source.yaml's max_file_mb (the default without one)."""
    return read_config(paths).max_file_mb if paths.source.is_file() else MAX_FILE_MB


def read_file(
    path: Path, shown: str | None = None, max_mb: int = MAX_FILE_MB, contract: Contract | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A CSV or Parquet file (refused unread when over ``max_mb`` MiB), and its lineage.

    Given the ``contract``, its text labels are read as text (snapshot.read_table says why).
    """
    progress.note(f"reading {shown or path}")
    frame = read_table(path, max_mb, contract)
    return frame, {"kind": "file", "path": str(shown or path), "file_sha256": sha256_of(path)}


def load(
    config: SourceConfig,
    paths: Paths,
    rows: int | None = None,
    seed: int | None = None,
    contract: Contract | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The configured source's rows and a description of where they came from.

    The example generator draws the label of the ``contract``'s task (default: the project's).
    """
    if config.kind == "file":
        return read_file(paths.root / str(config.path), str(config.path), config.max_file_mb, contract)
    from data_pipelines import example

    rows = rows or config.rows
    seed = config.seed if seed is None else seed
    task = contract.task if contract else None
    progress.note(f"generating {rows} example loan applications (seed {seed})")
    frame = example.generate(rows, seed=seed, task=task)
    return frame, {"kind": "example", "generator": "data_pipelines.example", "rows": rows, "seed": seed}
