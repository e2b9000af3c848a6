"""The scheduled drift run end to end (`mlops drift`, `mlops retrain-pr`) on a registered workspace.

The champion's own ONNX model scores the captured rows, as serving would, so the run compares
like with like; what it decided is read back from the files it wrote (drift.json, the
history, the snapshots) and from what the command line printed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

from data_pipelines.example import example_contract
from data_pipelines.snapshot import read_parquet
from governance.cli import main
from governance.core import encoding
from governance.core.capture import feedback_line
from governance.core.paths import Paths
from governance.core.records import DriftSummary, read_drift_summary
from monitoring import check, reference
from monitoring.capture import read_window
from monitoring.decision import read_history
from tests.support.drift import START, example, fake_scores, write_capture

CONTRACT = example_contract()


def capture_from(paths: Paths, frame: pd.DataFrame, name: str) -> Path:
    """Capture files of `frame` scored by the workspace's champion (every other row labelled)."""
    champion, _ = reference.champion(paths)
    assert champion is not None
    scores = reference.model_scores(reference.model_path(paths, champion), frame, CONTRACT)
    capture = paths.root / "captures" / name
    write_capture(capture, frame, CONTRACT, scores, model_version=champion.version)
    return capture


def drift(paths: Paths, capture: Path, capsys: pytest.CaptureFixture[str]) -> tuple[DriftSummary, str]:
    """`mlops --root <workspace> drift` on one capture: the summary it wrote and what it printed."""
    capsys.readouterr()
    code = main(["--root", str(paths.root), "drift", "--capture-uri", str(capture), "--detector", "scipy"])
    out = capsys.readouterr().out
    assert code == 0, out
    return read_drift_summary(paths.drift_reports / "drift.json"), out


def snapshots(paths: Paths) -> set[str]:
    return {path.name for path in paths.snapshots.iterdir()}


def test_the_cli_turns_a_degraded_labelled_window_into_a_validated_retraining_request(
    registered_workspace, capsys
):
    paths, version = registered_workspace
    before = snapshots(paths)
    capture = capture_from(paths, example(1200, seed=31, concept_drift=1.0), "degraded")
    summary, out = drift(paths, capture, capsys)
    decision = summary.decision
    assert decision.status == "retrain"
    assert any(reason.startswith("metric_drop") for reason in decision.reasons)
    assert f"decision: {decision.status}" in out.splitlines()
    assert all(f"  - {reason}" in out.splitlines() for reason in decision.reasons)
    assert summary.reference.model_version == version and summary.window.model_versions == (version,)
    assert not any("scored by model version" in note for note in decision.notes)
    assert summary.window.labelled_rows == 600
    dataset = summary.dataset
    assert dataset is not None and dataset.valid
    # the default retrain.data keeps the reference rows: hold-out slice + training rows + the window
    source = dataset.manifest["source"]
    rows = {segment["source"]: segment["rows"] for segment in source["segments"]}
    assert source["data"] == "reference_and_window" and rows["window"] == 600
    assert rows["reference_holdout"] > 0 and rows["reference"] > 0
    assert dataset.manifest["rows"] == sum(rows.values()) == dataset.rows
    assert snapshots(paths) - before == {dataset.manifest["snapshot_id"]}
    for name in ("report.html", "summary.md", "drift.json"):
        assert (paths.drift_reports / name).stat().st_size > 0
    history = read_history(paths.history)
    assert history[-1] == summary.history_record
    assert history[-1].status == "retrain" and history[-1].snapshot_id == dataset.manifest["snapshot_id"]

    assert main(["--root", str(paths.root), "retrain-pr", "--dry-run"]) == 0
    plan = json.loads((paths.drift_reports / "retrain_pr.json").read_text())
    assert plan["branch"] == "retrain/auto"
    request = json.loads(plan["files"]["governance/retraining/request.json"])
    assert request["snapshot"]["snapshot_id"] == dataset.manifest["snapshot_id"]
    assert "reference_and_window" in request["retraining_set"] and "window 600" in request["retraining_set"]
    assert request["retraining_set"] in plan["body"]
    assert plan["files"]["governance/monitoring_history.jsonl"].count("\n") == len(history)


def test_a_window_that_fails_validation_is_reported_and_never_becomes_training_data(
    registered_workspace, capsys
):
    paths, _ = registered_workspace
    frame = example(1200, seed=32, concept_drift=1.0)
    frame.loc[frame.index[:40], "age"] = 150  # outside the contract's range
    before = snapshots(paths)
    summary, out = drift(paths, capture_from(paths, frame, "invalid"), capsys)
    assert summary.decision.status == "retrain_blocked" and not summary.decision.retrain
    assert "decision: retrain_blocked" in out.splitlines()
    assert summary.dataset is not None and not summary.dataset.valid
    assert any("age" in error for error in summary.dataset.errors)
    assert snapshots(paths) == before
    assert main(["--root", str(paths.root), "retrain-pr", "--dry-run"]) == 0
    assert "failed validation" in capsys.readouterr().out


def test_relabels_keep_the_first_label_in_the_retraining_set_unless_the_policy_says_otherwise(
    registered_workspace, capsys
):
    """Someone holding feedback tokens flips 50 recorded outcomes: the run counts them, and the
    snapshot trains on the first labels unless governance/policy.yaml (`feedback.relabel`) says
    the newest label wins."""
    paths, _ = registered_workspace
    frame = example(1200, seed=36, concept_drift=1.0)
    capture = capture_from(paths, frame, "relabelled")
    labels = frame[CONTRACT.target.name]
    # the new label: the last class (binary example: 1, the positive class), or a number nobody observed
    new = CONTRACT.target.classes[-1] if CONTRACT.target.is_classification else 999.5
    flipped = [index for index in range(0, len(frame), 2) if labels.iloc[index] != new][:50]
    later = START + timedelta(days=9)
    lines = [
        feedback_line(
            request_id=f"req-host-1-0-{index // 5}", row=index % 5, label=new, timestamp=later.isoformat()
        )
        for index in flipped
    ]
    folder = capture / f"date={later.date()}"
    folder.mkdir()
    (folder / "elsewhere-1-0.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    recorded = int((labels.iloc[::2] == new).sum())

    def trained_on(summary: DriftSummary) -> int:
        """How many rows of the retraining set carry the new label."""
        assert summary.decision.retrain and summary.dataset is not None and summary.dataset.valid
        rows = read_parquet(Path(summary.dataset.path) / "data.parquet")
        window = summary.dataset.manifest["source"]["segments"][-1]
        assert window["source"] == "window"
        return int((rows.tail(window["rows"])[CONTRACT.target.name] == new).sum())

    summary, _ = drift(paths, capture, capsys)
    assert summary.window.relabelled_rows == 50 and summary.window.labelled_rows == 600
    assert any("50 prediction(s)" in note and "first_wins" in note for note in summary.decision.notes)
    assert "50 relabelled" in (paths.drift_reports / "summary.md").read_text()
    assert read_history(paths.history)[-1].window["relabelled_rows"] == 50
    assert trained_on(summary) == recorded, "the first labels are the retraining set"

    original = paths.policy.read_text()
    policy = yaml.safe_load(original)
    policy["feedback"] = {"relabel": "last_wins"}
    paths.policy.write_text(yaml.safe_dump(policy, sort_keys=False))
    try:
        summary, _ = drift(paths, capture, capsys)
    finally:
        paths.policy.write_text(original)
    assert any("last_wins" in note for note in summary.decision.notes)
    assert trained_on(summary) == recorded + 50, "the newest labels, as the policy says"


def test_a_window_too_small_to_judge_is_recorded_without_a_decision(registered_workspace, capsys):
    paths, _ = registered_workspace
    summary, _ = drift(paths, capture_from(paths, example(50, seed=33), "small"), capsys)
    assert summary.decision.status == "insufficient_data" and summary.drift is None
    assert read_history(paths.history)[-1].status == "insufficient_data"


def test_drift_json_reads_back_as_the_summary_the_run_returned(registered_workspace):
    paths, _ = registered_workspace
    capture = capture_from(paths, example(600, seed=34, covariate_drift=1.0), "roundtrip")
    history = paths.history.read_text() if paths.history.exists() else ""
    summary = check.run(paths, check.Options(uri=str(capture), detector="scipy", record=False))
    assert summary.drift is not None and summary.performance is not None and summary.timings
    assert read_drift_summary(paths.drift_reports / "drift.json") == summary
    assert (paths.history.read_text() if paths.history.exists() else "") == history, "record=False"


def test_a_missing_capture_folder_exits_2_naming_it(registered_workspace, capsys):
    paths, _ = registered_workspace
    nowhere = paths.root / "no-capture-here"
    code = main(["--root", str(paths.root), "drift", "--capture-uri", str(nowhere), "--detector", "scipy"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"\nerror: capture store {nowhere} does not exist" in f"\n{err}"
    assert "Traceback" not in err


def test_monitoring_scores_with_the_ground_encoder_and_scorer(registered_workspace, monkeypatch):
    """Reference scores and serving's scores come from one encoder: the captured window, with its
    missing values and categoricals as the reader returns them, scores as serving's JSON rows do."""
    paths, _ = registered_workspace
    champion, _ = reference.champion(paths)
    model = reference.model_path(paths, champion)
    frame = example(300, seed=35)
    frame.loc[frame.index[::7], "income"] = np.nan
    frame.loc[frame.index[::11], "employment_type"] = None
    capture = paths.root / "captures" / "encoder"
    write_capture(capture, frame, CONTRACT, fake_scores(frame, CONTRACT))
    window = read_window(str(capture), contract=CONTRACT)
    assert window["income"].isna().any() and window["employment_type"].isna().any()
    assert isinstance(window["employment_type"].dtype, pd.CategoricalDtype)

    encoded: list[str] = []  # a spy on the ground encoder: every feature monitoring feeds passes it
    encode_column = encoding.encode_column

    def spy(feature, values):
        encoded.append(feature.name)
        return encode_column(feature, values)

    monkeypatch.setattr(encoding, "encode_column", spy)
    scores = reference.model_scores(model, window, CONTRACT)
    assert encoded == CONTRACT.feature_names
    monkeypatch.undo()

    records = frame[CONTRACT.feature_names].astype(object).to_dict("records")
    served = {  # the columns serving hands the encoder: JSON values, None for a missing one
        name: [None if value is None or value != value else value for value in (r[name] for r in records)]
        for name in CONTRACT.feature_names
    }
    expected = encoding.Scorer(model).score(encoding.feeds(served, CONTRACT))
    assert np.array_equal(scores.probabilities, expected.probabilities)
    assert np.array_equal(scores.predicted, expected.predicted) and np.array_equal(
        scores.value, expected.value
    )


def test_score_drift_is_skipped_with_the_reason_when_the_champion_cannot_be_rescored(registered_workspace):
    paths, _ = registered_workspace
    champion, _ = reference.champion(paths)
    ref = reference.load_reference(paths, champion)
    scores, note = reference.reference_scores(paths, champion, ref, CONTRACT)
    assert note is None and scores is not None and len(scores) == len(ref.frame)

    def with_artifact(**changes):
        return champion.model_copy(update={"artifact": champion.artifact.model_copy(update=changes)})

    for entry, reason in (
        (None, "no registered model"),
        (with_artifact(path="artifacts/models/gone/model.onnx"), "model file"),
        (with_artifact(sha256="f" * 64), "sha256 differs"),
    ):
        scores, note = reference.reference_scores(paths, entry, ref, CONTRACT)
        assert scores is None and note.startswith("score drift not checked") and reason in note
