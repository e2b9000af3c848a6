"""Traffic for `make demo`: score generated loan applications against a running service.

Why a separate script: it runs with the *generated project's* Python (`.venv/bin/python`),
because the rows come from the project's own example generator
(`data_pipelines.example.generate`, with `covariate_drift` and `concept_drift` for the
drifted phase) and are shaped by its data contract; the demo runner itself has only the template's tools.

One phase = `--rows` applications sent to `POST /predict` in batches, then the true labels
of a `--feedback-share` of the scored rows sent to `POST /feedback`, the way a loan's
outcome arrives later in production: each label quotes the `feedback_token` its prediction
carried (a label for a prediction the client never received is refused). Prints one JSON
line with what was sent and what the service acknowledged; exits 1 when the service refused
anything (the demo stops there).

Usage: <project>/.venv/bin/python scripts/demo_traffic.py --url http://127.0.0.1:8080 \
           --project <project> --rows 1000 --seed 101 [--covariate-drift 0.8] [--concept-drift 0.5] \
           [--feedback-share 0.8]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def post(url: str, body: Any, timeout: float = 30) -> tuple[int, Any]:
    """(status, parsed JSON); HTTP errors are answers, connection errors propagate."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw.decode(errors="replace")


def plain(value: Any) -> Any:
    """A JSON value from a pandas/numpy cell: None for missing, Python int/float/str otherwise."""
    import pandas as pd

    if value is None or pd.isna(value):  # None, NaN, pd.NA and NaT alike
        return None
    return value.item() if hasattr(value, "item") else value  # numpy scalar -> Python


def records_and_labels(
    rows: int, seed: int, covariate_drift: float, concept_drift: float
) -> tuple[list[dict], list[int]]:
    from data_pipelines.example import generate
    from governance.core.contract import load

    contract = load()
    frame = generate(rows, seed=seed, covariate_drift=covariate_drift, concept_drift=concept_drift)
    columns = list(contract.feature_names)
    if contract.sensitive is not None:
        columns.append(contract.sensitive.name)
    records = [
        {column: plain(value) for column, value in zip(columns, row, strict=True)}
        for row in frame[columns].itertuples(index=False, name=None)
    ]
    labels = [int(label) for label in frame[contract.target.name]]
    return records, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the service's base URL")
    parser.add_argument("--project", type=Path, required=True, help="the generated project (for its modules)")
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--covariate-drift", type=float, default=0.0, help="inputs shift (0 to 1)")
    parser.add_argument(
        "--concept-drift", type=float, default=0.0, help="the label's dependence shifts (0 to 1)"
    )
    parser.add_argument("--batch", type=int, default=50, help="records per /predict request")
    parser.add_argument("--feedback-share", type=float, default=0.5, help="share of scored rows labelled")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.project.resolve()))

    records, labels = records_and_labels(args.rows, args.seed, args.covariate_drift, args.concept_drift)
    base = args.url.rstrip("/")
    started = time.perf_counter()
    scored: list[tuple[str, int]] = []  # (feedback token, true label)
    positives = 0
    for first in range(0, len(records), args.batch):
        batch = records[first : first + args.batch]
        status, answer = post(f"{base}/predict", {"records": batch})
        if status != 200:
            print(f"demo traffic: /predict answered {status}: {answer}", file=sys.stderr)
            return 1
        for row, prediction in enumerate(answer["predictions"]):
            scored.append((prediction["feedback_token"], labels[first + row]))
            positives += int(prediction["label"] == 1)
    predict_seconds = time.perf_counter() - started

    chooser = random.Random(args.seed)
    labelled = [item for item in scored if chooser.random() < args.feedback_share]
    for first in range(0, len(labelled), 200):
        items = [{"feedback_token": token, "label": label} for token, label in labelled[first : first + 200]]
        status, answer = post(f"{base}/feedback", items)
        if status not in (200, 202):
            print(f"demo traffic: /feedback answered {status}: {answer}", file=sys.stderr)
            return 1
    summary = {
        "rows": len(scored),
        "requests": math.ceil(len(records) / args.batch),
        "labelled": len(labelled),
        "predicted_positive_share": round(positives / max(len(scored), 1), 4),
        "covariate_drift": args.covariate_drift,
        "concept_drift": args.concept_drift,
        "seconds": round(time.perf_counter() - started, 2),
        "predict_rows_per_second": round(len(scored) / max(predict_seconds, 1e-9)),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
