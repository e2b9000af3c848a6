"""Reading capture windows: time and count windows, label joins, torn lines, bad files, and the
one capture schema (governance/core/capture.py) that serving writes and monitoring reads.

On the example data of this project's task (labels of the contract's type); every task's label
types are checked on real datasets in tests/monitoring/test_tasks.py.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import orjson
import pytest

from data_pipelines.example import example_contract
from governance.core.capture import COLUMNS, FeedbackRecord, PredictionRecord, feedback_line, prediction_line
from monitoring.capture import BAD_LINES, DUPLICATES, CaptureError, read_window, schema
from monitoring.predictions import from_scores, from_window
from tests.support.drift import START, another_label, example, fake_scores, served, write_capture

CONTRACT = example_contract()
TARGET = CONTRACT.target.name
# A label of the contract's type: a class, or a number for regression.
LABEL = CONTRACT.target.classes[-1] if CONTRACT.target.is_classification else 12.5


def plain(value):
    """A numpy scalar as the Python value a capture line holds."""
    return value.item() if hasattr(value, "item") else value


def signal_matches(window, frame) -> bool:
    """The window's prediction signal is the one the answers of `frame` give."""
    expected = from_scores(fake_scores(frame, CONTRACT), CONTRACT.target)
    return bool(np.allclose(from_window(window, CONTRACT.target), expected))


@pytest.fixture
def store(tmp_path):
    """300 predictions 7 minutes apart (they span two days), every other one labelled a day later."""
    frame = example(300, seed=1)
    write_capture(tmp_path, frame, CONTRACT, fake_scores(frame, CONTRACT), step=timedelta(minutes=7))
    return tmp_path, frame


def test_it_joins_feedback_labels_onto_predictions(store):
    root, frame = store
    window = read_window(str(root), contract=CONTRACT)
    assert len(window) == len(frame)
    assert window[TARGET].notna().sum() == 150
    labelled = window[TARGET].notna().to_numpy()
    assert window[TARGET][labelled].astype(object).tolist() == frame[TARGET][labelled].tolist()
    assert np.allclose(window["income"], frame["income"], equal_nan=True)
    assert (window["employment_type"].astype(str) == frame["employment_type"]).all()
    assert (window["sex"].astype(str) == frame["sex"]).all()
    assert signal_matches(window, frame)
    assert window["timestamp"].is_monotonic_increasing


def test_a_time_window_keeps_labels_that_arrived_in_later_partitions(store):
    root, _ = store
    since, until = START + timedelta(hours=10), START + timedelta(hours=20)
    window = read_window(f"file://{root}", since=since, until=until.isoformat(), contract=CONTRACT)
    assert len(window) == 86  # minutes 600..1199 at 7-minute steps
    assert window["timestamp"].min() >= since and window["timestamp"].max() < until
    assert window[TARGET].notna().sum() == 43


def test_last_n_returns_the_newest_predictions(store):
    root, frame = store
    window = read_window(str(root), last_n=25, contract=CONTRACT)
    assert len(window) == 25
    assert window["prediction_id"].iloc[-1] == "req-host-1-0-59:4"
    assert signal_matches(window, frame.iloc[-25:])


def label_again(root, index: int, label: object, days: int, stream: str) -> None:
    """Another feedback line for prediction `index` of the store, `days` after START."""
    moment = START + timedelta(days=days)
    line = feedback_line(
        request_id=f"req-host-1-0-{index // 5}", row=index % 5, label=label, timestamp=moment.isoformat()
    )
    folder = root / f"date={moment.date()}"
    folder.mkdir(exist_ok=True)
    with (folder / f"{stream}.jsonl").open("ab") as handle:
        handle.write(orjson.dumps(line) + b"\n")


def test_the_first_label_wins_by_default_and_the_policy_can_let_the_newest_win(store):
    root, frame = store
    first = {index: plain(frame[TARGET].iloc[index]) for index in (0, 2, 4)}
    label_again(root, 0, another_label(first[0], CONTRACT), days=5, stream="other-2-0")  # overwritten ...
    label_again(root, 0, first[0], days=6, stream="other-3-0")  # ... and set back
    label_again(root, 2, another_label(first[2], CONTRACT), days=5, stream="other-2-0")  # a changed outcome
    label_again(root, 4, first[4], days=5, stream="other-2-0")  # the same label again: no relabel
    default = read_window(str(root), contract=CONTRACT).set_index("prediction_id")
    kept = {index: default.loc[f"req-host-1-0-0:{index}", TARGET] for index in first}
    assert kept == first, "a later label cannot overwrite the first"
    assert default["relabelled"].sum() == 2
    assert default.loc[["req-host-1-0-0:0", "req-host-1-0-0:2"], "relabelled"].all()
    assert default[TARGET].notna().sum() == 150, "labelling again adds no rows"
    newest = read_window(str(root), contract=CONTRACT, relabel="last_wins").set_index("prediction_id")
    kept = {index: newest.loc[f"req-host-1-0-0:{index}", TARGET] for index in first}
    assert kept == {0: first[0], 2: another_label(first[2], CONTRACT), 4: first[4]}
    assert newest["relabelled"].sum() == 2
    assert str(newest.loc["req-host-1-0-0:2", "feedback_timestamp"]).startswith("2024-05-06")
    with pytest.raises(CaptureError, match="first_wins or last_wins"):
        read_window(str(root), contract=CONTRACT, relabel="any")


def test_labels_count_as_first_or_newest_by_their_time_not_by_where_they_were_read(store):
    """A process may flush an older label after a newer one: the policy's `first` and `newest`
    go by the labels' timestamps; lines without a label (the oldest and the newest here) count for
    neither."""
    root, frame = store
    older = plain(frame[TARGET].iloc[1])  # prediction 1 has no label in the store
    newer = another_label(older, CONTRACT)
    lines = [
        feedback_line(
            request_id="req-host-1-0-0",
            row=1,
            label=label,
            timestamp=(START + timedelta(days=5, hours=hours)).isoformat(),
        )
        for label, hours in ((newer, 2), (older, 1))  # the newer line is written first
    ]
    unlabelled = {**lines[0], "label": None, "timestamp": (START + timedelta(days=5)).isoformat()}
    lines = [
        *lines,
        unlabelled,
        {**unlabelled, "timestamp": (START + timedelta(days=5, hours=3)).isoformat()},
    ]
    folder = root / "date=2024-05-06"
    folder.mkdir()
    (folder / "other-2-0.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    for relabel, expected in (("first_wins", older), ("last_wins", newer)):
        window = read_window(str(root), contract=CONTRACT, relabel=relabel).set_index("prediction_id")
        assert window.loc["req-host-1-0-0:1", TARGET] == expected, relabel
        assert window.loc["req-host-1-0-0:1", "relabelled"]
        assert window["relabelled"].sum() == 1


def test_a_label_without_a_prediction_id_is_joined_by_request_id_and_row(store):
    root, _ = store
    legacy = {
        "kind": "feedback",
        "request_id": "req-host-1-0-0",
        "row": 1,  # an unlabelled prediction (every other one is labelled)
        "label": LABEL,
        "timestamp": (START + timedelta(days=5)).isoformat(),
    }  # no prediction_id: derived from request_id and row
    folder = root / "date=2024-05-06"
    folder.mkdir()
    (folder / "other-2-0.jsonl").write_bytes(orjson.dumps(legacy) + b"\n")
    window = read_window(str(root), contract=CONTRACT)
    assert window.loc[window["prediction_id"] == "req-host-1-0-0:1", TARGET].item() == LABEL
    assert not window["relabelled"].any()


def test_a_half_written_last_line_is_ignored_and_a_bad_line_names_its_file(store):
    root, frame = store
    stream = next(root.glob("date=*/host-1-0.jsonl"))
    with stream.open("ab") as handle:
        handle.write(b'{"kind": "prediction", "prediction_id": "x')
    assert len(read_window(str(root), contract=CONTRACT)) == len(frame)
    bad = root / "date=2024-05-01" / "broken.jsonl"
    bad.write_bytes(b'{"kind": "prediction", "row": "not a number"}\n')
    with pytest.raises(CaptureError, match=r"broken\.jsonl"):
        read_window(str(root), contract=CONTRACT)


def test_a_torn_line_in_the_middle_of_a_file_is_skipped_and_counted_not_fatal(store):
    """What a write cut short by a full disk leaves: half a line run into the next whole one."""
    root, frame = store
    stream = next(root.glob("date=*/host-1-0.jsonl"))
    lines = stream.read_bytes().splitlines(keepends=True)
    torn = lines[10][: len(lines[10]) // 2]  # its prediction is lost; the line after it is whole
    stream.write_bytes(b"".join([*lines[:10], torn, b"\n", *lines[11:]]))
    window = read_window(str(root), contract=CONTRACT)
    assert len(window) == len(frame) - 1
    assert window.attrs[BAD_LINES] == 1
    assert window.attrs[DUPLICATES] == 0


def test_a_prediction_written_twice_is_kept_once_and_counted(store):
    """A batch retried after a failed write may repeat its rows; the first copy is the one kept."""
    root, frame = store
    stream = next(root.glob("date=*/host-1-0.jsonl"))
    lines = stream.read_bytes().splitlines(keepends=True)
    repeated = [line for line in lines if b'"kind":"prediction"' in line.replace(b" ", b"")][:27]
    with stream.open("ab") as handle:
        handle.writelines(repeated)
    window = read_window(str(root), contract=CONTRACT)
    assert len(window) == len(frame)
    assert window["prediction_id"].is_unique
    assert window.attrs[DUPLICATES] == 27
    assert window.attrs[BAD_LINES] == 0
    assert len(read_window(str(root), last_n=len(frame), contract=CONTRACT)) == len(frame)


def test_a_missing_store_and_bad_window_arguments_fail_clearly(tmp_path):
    with pytest.raises(CaptureError, match="does not exist"):
        read_window(str(tmp_path / "nowhere"), contract=CONTRACT)
    with pytest.raises(CaptureError, match="last_n must be a positive integer"):
        read_window(str(tmp_path), last_n=0, contract=CONTRACT)
    with pytest.raises(CaptureError, match="since must be an ISO 8601"):
        read_window(str(tmp_path), since="yesterday", contract=CONTRACT)
    assert read_window(str(tmp_path), contract=CONTRACT).empty


def test_it_reads_what_the_serving_capture_store_writes(tmp_path):
    """The contract between app/capture.py (writer) and monitoring/capture.py (reader)."""
    from app.capture import CaptureStore

    frame = example(40, seed=3)
    answers = served(fake_scores(frame, CONTRACT), CONTRACT)
    writer = CaptureStore(f"file://{tmp_path}", CONTRACT.feature_names, "sex", flush_rows=10_000)
    records = [
        {key: (None if value is None or value != value else value) for key, value in row.items()}
        for row in frame[[*CONTRACT.feature_names, "sex"]].astype(object).to_dict("records")
    ]
    stamp = START.timestamp()
    for start in range(0, 40, 10):
        chunk = records[start : start + 10]
        labels = [label for label, _ in answers[start : start + 10]]
        probabilities = [scores for _, scores in answers[start : start + 10]]
        writer.record_predictions(f"r{start}", stamp + start, "m", "v7", chunk, labels, probabilities)
    other = another_label(LABEL, CONTRACT)
    writer.record_feedback(stamp + 3600, [("r0", 3, LABEL), ("r10", 0, other)])
    writer.close()
    window = read_window(f"file://{tmp_path}", contract=CONTRACT)
    assert len(window) == 40
    assert window["model_version"].astype(str).unique().tolist() == ["v7"]
    assert window.set_index("prediction_id")[TARGET].dropna().to_dict() == {"r0:3": LABEL, "r10:0": other}
    assert signal_matches(window, frame)
    assert np.allclose(window["debt_to_income"], frame["debt_to_income"])


def test_the_reader_schema_is_the_ground_capture_record_typed_from_the_contract():
    """Every column of a capture line is read, and the reader reads nothing the record does not define."""
    fields = schema(CONTRACT)
    assert set(fields.names) == set(COLUMNS)
    assert set(COLUMNS) == set(PredictionRecord.model_fields) | set(FeedbackRecord.model_fields)
    features = fields.field("features").type
    assert [features.field(i).name for i in range(features.num_fields)] == CONTRACT.feature_names
    sensitive = fields.field("sensitive").type
    assert [sensitive.field(i).name for i in range(sensitive.num_fields)] == [CONTRACT.sensitive.name]


def test_lines_built_from_the_ground_record_are_read_back_value_for_value(tmp_path):
    frame = example(2, seed=4)
    first, second = frame.to_dict("records")
    answers = served(fake_scores(frame, CONTRACT), CONTRACT)
    features = [{name: row[name] for name in CONTRACT.feature_names} for row in (first, second)]
    features[1]["income"] = None  # a missing number travels as null
    lines = [
        prediction_line(
            request_id="req-9",
            row=row,
            timestamp=f"2024-05-01T08:00:0{row}.000000+00:00",
            model_name="loans",
            model_version="v3",
            features=features[row],
            sensitive={"sex": ("female", None)[row]},
            label=answers[row][0],
            scores=answers[row][1],
        )
        for row in (0, 1)
    ]
    for line in lines:
        PredictionRecord.model_validate(line)  # the writer's dict is the ground record
    label = feedback_line(request_id="req-9", row=1, label=LABEL, timestamp="2024-05-02T09:00:00+00:00")
    FeedbackRecord.model_validate(label)
    (tmp_path / "date=2024-05-01").mkdir()
    (tmp_path / "date=2024-05-01" / "a.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    (tmp_path / "date=2024-05-02").mkdir()
    (tmp_path / "date=2024-05-02" / "a.jsonl").write_bytes(orjson.dumps(label) + b"\n")

    window = read_window(str(tmp_path), contract=CONTRACT).set_index("prediction_id")
    assert window.index.tolist() == ["req-9:0", "req-9:1"]
    assert window["request_id"].tolist() == ["req-9", "req-9"] and window["row"].tolist() == [0, 1]
    assert window["model_name"].astype(str).tolist() == ["loans", "loans"]
    assert window["model_version"].astype(str).tolist() == ["v3", "v3"]
    assert window["predicted_label"].astype(object).tolist() == [answer for answer, _ in answers]
    assert signal_matches(window, frame)
    assert window["timestamp"].iloc[1].isoformat() == "2024-05-01T08:00:01+00:00"
    for name in CONTRACT.feature_names:
        read = window[name].astype(object).where(window[name].notna(), None).tolist()
        assert read == [features[0][name], features[1][name]], name
    assert window["sex"].astype(object).where(window["sex"].notna(), None).tolist() == ["female", None]
    assert window[TARGET].isna().tolist() == [True, False] and window.loc["req-9:1", TARGET] == LABEL
    assert str(window.loc["req-9:1", "feedback_timestamp"]) == "2024-05-02 09:00:00+00:00"
