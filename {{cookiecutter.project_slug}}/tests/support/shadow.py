"""Builders for the champion-vs-challenger tests: a challenger's shadow lines in the serving format.

`write_shadow` numbers rows exactly as tests/support/drift.py's `write_capture` does (request
`req-<stream>-<n>`, row within it), so each shadow line carries the prediction_id of the
champion's prediction for the same row, as serving writes them with SHADOW_MODEL_PATH.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from governance.core.capture import shadow_line
from governance.core.contract import Contract
from governance.core.encoding import Scores
from tests.support.drift import START, served


def write_shadow(
    root: Path,
    frame: pd.DataFrame,
    contract: Contract,
    scores: np.ndarray | Scores,
    *,
    version: str,
    champion_version: str = "v1",
    start: datetime = START,
    step: timedelta = timedelta(seconds=1),
    stream: str = "host-1-0",
    rows_per_request: int = 5,
    latency_ms: float = 0.25,
    champion_latency_ms: float = 0.2,
) -> None:
    """The challenger's answers (`scores`, as `served` takes them) to the rows `write_capture` wrote."""
    answers = served(scores, contract)
    lines: dict[str, list[bytes]] = {}
    for index in range(len(frame)):
        moment = start + step * index
        line = shadow_line(
            request_id=f"req-{stream}-{index // rows_per_request}",
            row=index % rows_per_request,
            timestamp=(moment + timedelta(milliseconds=1)).isoformat(timespec="microseconds"),
            model_name="loan_default_model",
            model_version=version,
            champion_version=champion_version,
            label=answers[index][0],
            scores=answers[index][1],
            latency_ms=latency_ms,
            champion_latency_ms=champion_latency_ms,
        )
        lines.setdefault(moment.date().isoformat(), []).append(orjson.dumps(line))
    for day, chunk in lines.items():
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{stream}.jsonl").open("ab") as handle:
            handle.write(b"\n".join(chunk) + b"\n")
