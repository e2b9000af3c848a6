"""Serving for every supervised task, on real datasets whatever task this project was made for.

Binary with word labels (breast cancer: benign/malignant, the positive class a word), multiclass
with string classes (wine cultivars) and regression (diabetes progression): each gets its own
contract and a small ONNX model of the serving interface (tests/support/datasets.py), so these
tests run in a bake of any task. The expected answers come from onnxruntime and the contract
directly (tests/support/serving.py onnx_answers), never from the service's own mapping code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from fastapi.testclient import TestClient

from app.main import create_app
from governance.core.capture import PredictionRecord
from governance.core.contract import load as load_contract
from tests.support.datasets import TASK_DATASETS, TaskData, onnx_model
from tests.support.serving import assert_answers, onnx_answers, read_capture, served_outputs

# Beyond the three datasets as they come, the same rows with other class types: booleans (the
# diagnosis as false/true) and integers that are not their own index (cultivars 10, 20, 30), where
# an answer of the index instead of the class would show.
RECODED = {
    "binary_booleans": ("binary_classification", {"benign": False, "malignant": True}),
    "multiclass_integers": ("multiclass_classification", {"barolo": 10, "grignolino": 20, "barbera": 30}),
}
CASES = [*TASK_DATASETS, *RECODED]


def recoded(data: TaskData, mapping: dict[str, Any], folder: Path) -> TaskData:
    """The dataset with its classes replaced through `mapping` (contract and rows alike)."""
    raw = yaml.safe_load(data.contract_path.read_text())
    target = raw["target"]
    target["classes"] = [mapping[value] for value in target["classes"]]
    if "positive_class" in target:
        target["positive_class"] = mapping[target["positive_class"]]
    path = folder / f"recoded-{data.contract_path.name}"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    frame = data.frame.copy()
    frame[data.contract.target.name] = frame[data.contract.target.name].map(mapping)
    return TaskData(data.name, load_contract(path), frame, path)


@pytest.fixture(scope="module", params=CASES)
def task(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[TaskData, Path]:
    """One task's dataset (contract + rows) and its ONNX model."""
    folder = tmp_path_factory.mktemp(request.param)
    if request.param in RECODED:
        name, mapping = RECODED[request.param]
        data = recoded(TASK_DATASETS[name](folder), mapping, folder)
    else:
        data = TASK_DATASETS[request.param](folder)
    return data, onnx_model(data, folder / "model.onnx")


def class_type(data: TaskData) -> type:
    return type(data.contract.target.classes[0])


@pytest.fixture
def served(task: tuple[TaskData, Path], settings_for: Any) -> Iterator[tuple[TestClient, TaskData, Any]]:
    """A started service of the task's contract and model (production: the digests must match)."""
    data, model = task
    settings = settings_for(contract_path=data.contract_path, model_path=model)
    with TestClient(create_app(settings)) as client:
        yield client, data, settings


def records_of(data: TaskData, rows: int = 30) -> list[dict[str, Any]]:
    """Real rows spread over the dataset (every class shows up), features only, as JSON values."""
    picked = data.frame.iloc[np.linspace(0, len(data.frame) - 1, rows).astype(int)]
    return picked[data.contract.feature_names].to_dict("records")


def truth_of(data: TaskData, rows: int = 30) -> list[Any]:
    picked = data.frame.iloc[np.linspace(0, len(data.frame) - 1, rows).astype(int)]
    return picked[data.contract.target.name].tolist()


# -- /predict --------------------------------------------------------------------------------------
def test_predict_answers_class_values_with_every_class_probability_or_a_value(served, task):
    client, data, _ = served
    target = data.contract.target
    records = records_of(data)
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert_answers(predictions, onnx_answers(task[1], data.contract, records))
    assert all(prediction["feedback_token"] for prediction in predictions)
    truth = truth_of(data)
    if target.is_classification:
        # The index the model answers is mapped to the class it was trained on: the answers agree
        # with the dataset's own labels (a shuffled mapping would score near chance).
        labels = [prediction["label"] for prediction in predictions]
        assert all(type(label) is class_type(data) for label in labels)
        assert np.mean([label == true for label, true in zip(labels, truth, strict=True)]) >= 0.85
        for prediction in predictions:
            assert list(prediction["probabilities"]) == [  # the class keys: strings as they are, else JSON
                value if isinstance(value, str) else json.dumps(value) for value in target.classes
            ]
            assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    else:
        values = [prediction["value"] for prediction in predictions]
        assert np.corrcoef(values, truth)[0, 1] > 0.5


# -- Open Inference Protocol -----------------------------------------------------------------------
def test_model_metadata_declares_the_outputs_of_the_task(served):
    client, data, _ = served
    body = client.get(f"/v2/models/{data.name}").json()
    outputs = {tensor["name"]: tensor for tensor in body["outputs"]}
    assert outputs == served_outputs(data.contract)
    if data.contract.target.is_classification:
        expected = {str: "BYTES", bool: "BOOL", int: "INT64"}[class_type(data)]
        assert outputs["label"]["datatype"] == expected
    assert [tensor["name"] for tensor in body["inputs"]] == data.contract.feature_names


def test_infer_answers_the_declared_outputs_and_the_same_as_predict(served):
    client, data, _ = served
    contract, records = data.contract, records_of(data, 5)
    inputs = [
        {"name": name, "shape": [5, 1], "datatype": "FP32", "data": [record[name] for record in records]}
        for name in contract.feature_names
    ]
    response = client.post(f"/v2/models/{data.name}/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    outputs = {tensor["name"]: tensor for tensor in response.json()["outputs"]}
    declared = served_outputs(contract)
    assert list(outputs) == list(declared)
    for name, tensor in outputs.items():
        assert tensor["datatype"] == declared[name]["datatype"]
        assert tensor["shape"] == [5, *declared[name]["shape"][1:]]
    predicted = client.post("/predict", json={"records": records}).json()["predictions"]
    if not contract.target.is_classification:
        assert outputs["value"]["data"] == pytest.approx([p["value"] for p in predicted], rel=1e-6)
        return
    assert outputs["label"]["data"] == [prediction["label"] for prediction in predicted]
    classes = len(contract.target.classes)
    flat = outputs["probabilities"]["data"]
    assert [flat[row * classes : (row + 1) * classes] for row in range(5)] == [
        pytest.approx(list(prediction["probabilities"].values()), abs=1e-6) for prediction in predicted
    ]


def test_infer_refuses_an_output_the_task_does_not_answer_naming_it(served):
    client, data, _ = served
    record = records_of(data, 1)
    inputs = [
        {"name": n, "shape": [1], "datatype": "FP32", "data": [record[0][n]]}
        for n in data.contract.feature_names
    ]
    other = "label" if not data.contract.target.is_classification else "value"
    response = client.post(
        f"/v2/models/{data.name}/infer", json={"inputs": inputs, "outputs": [{"name": other}]}
    )
    assert response.status_code == 400
    body = response.json()
    assert (body["field"], body["rule"]) == ("outputs[0].name", "unknown_output")
    assert f'"{other}"' in body["error"] and data.contract.task in body["error"]


# -- /feedback -------------------------------------------------------------------------------------
def wrong_labels(data: TaskData) -> list[Any]:
    """Near misses: another spelling or JSON type of a class, or a number sent as text."""
    target = data.contract.target
    if not target.is_classification:
        return ["151.0", True, None, [151.0], {"value": 1}]
    first = target.classes[0]
    if isinstance(first, str):
        return [first.upper(), 0, 1, True, None, [first], "", " " + first]
    if isinstance(first, bool):
        return [0, 1, "true", "false", None, [first]]
    return [True, str(first), first + 0.5, 0, 1, None, [first]]  # 0 and 1: indices, not classes


def test_feedback_takes_a_class_value_of_its_type_or_a_finite_number_and_captures_it(served):
    client, data, settings = served
    target = data.contract.target
    answer = client.post("/predict", json={"records": records_of(data, 2)}).json()
    token = answer["predictions"][0]["feedback_token"]
    for label in wrong_labels(data):
        response = client.post("/feedback", json={"feedback_token": token, "label": label})
        assert response.status_code == 422, (label, response.text)
        body = response.json()
        assert body["field"] == "body.label", body
        assert body["rule"] == ("category" if target.is_classification else "type")
    true = target.classes[-1] if target.is_classification else 151
    response = client.post("/feedback", json={"feedback_token": token, "label": true})
    assert response.status_code == 202, response.text
    client.app.service.capture.flush()  # write what the writer thread would write within a second
    [line] = [row for row in read_capture(Path(settings.capture_uri)) if row["kind"] == "feedback"]
    assert line["prediction_id"] == f"{answer['request_id']}:0"
    if target.is_classification:
        assert line["label"] == true and type(line["label"]) is class_type(data)
    else:
        assert line["label"] == 151.0 and type(line["label"]) is float  # a float64 target


@pytest.mark.parametrize("task", ["regression"], indirect=True)
def test_feedback_refuses_an_infinite_value_for_regression(served):
    client, data, _ = served
    token = client.post("/predict", json={"records": records_of(data, 1)}).json()["predictions"][0]
    body = b'{"feedback_token": "%s", "label": 1e999}' % token["feedback_token"].encode()
    response = client.post("/feedback", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text  # never recorded, never a 5xx


# -- capture and metrics ---------------------------------------------------------------------------
def test_capture_lines_hold_the_answered_label_and_the_probabilities_in_contract_order(served):
    client, data, settings = served
    answer = client.post("/predict", json={"records": records_of(data, 4)}).json()
    client.app.service.capture.flush()
    lines = [row for row in read_capture(Path(settings.capture_uri)) if row["kind"] == "prediction"]
    assert len(lines) == 4
    for line, prediction in zip(
        sorted(lines, key=lambda row: row["row"]), answer["predictions"], strict=True
    ):
        record = PredictionRecord.model_validate(line)
        if data.contract.target.is_classification:
            assert record.label == prediction["label"] and type(line["label"]) is class_type(data)
            assert record.scores == list(prediction["probabilities"].values())
        else:
            assert record.label == prediction["value"] and record.scores == []
        assert set(record.features) == set(data.contract.feature_names)


def test_metrics_count_by_class_and_observe_the_score_of_the_task(served):
    client, data, _ = served
    target = data.contract.target
    predictions = client.post("/predict", json={"records": records_of(data, 12)}).json()["predictions"]
    text = client.get("/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"
    }
    if not target.is_classification:
        assert samples["model_value_count"] == 12
        assert samples["model_value_sum"] == pytest.approx(sum(p["value"] for p in predictions), rel=1e-6)
        assert not any(name.startswith("model_score") for name in samples)
        return
    for value in target.classes:
        expected = sum(prediction["label"] == value for prediction in predictions)
        key = value if isinstance(value, str) else json.dumps(value)
        assert samples["model_predictions_total" + '{class="' + key + '"}'] == expected
    # binary: the positive class's probability (here the word "malignant"); multiclass: the top class's
    if target.task == "binary_classification":
        positive = target.positive_class
        key = positive if isinstance(positive, str) else json.dumps(positive)
        observed = [p["probabilities"][key] for p in predictions]
    else:
        observed = [max(p["probabilities"].values()) for p in predictions]
    assert samples["model_score_count"] == 12
    assert samples["model_score_sum"] == pytest.approx(sum(observed), rel=1e-6)


# -- OpenAPI ---------------------------------------------------------------------------------------
def test_the_openapi_schema_describes_the_answer_and_the_label_of_the_task(served):
    client, data, _ = served
    target = data.contract.target
    paths = client.get("/openapi.json").json()["paths"]
    answer = paths["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    prediction = answer["properties"]["predictions"]["items"]
    feedback = paths["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
    label = feedback["properties"]["label"]
    if target.is_classification:
        json_type = {str: "string", bool: "boolean", int: "integer"}[class_type(data)]
        assert prediction["properties"]["label"]["type"] == json_type
        assert prediction["properties"]["label"]["enum"] == list(target.classes)
        keys = [value if isinstance(value, str) else json.dumps(value) for value in target.classes]
        assert prediction["properties"]["probabilities"]["required"] == keys
        assert label["type"] == json_type and label["enum"] == list(target.classes)
    else:
        assert prediction["required"] == ["value", "feedback_token"]
        assert label["type"] == "number"
    infer = paths["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert infer["properties"]["outputs"]["items"]["properties"]["name"]["enum"] == list(
        served_outputs(data.contract)
    )


# -- a model of another task or other classes is not served ----------------------------------------
def with_props(model: Path, folder: Path, **changes: str) -> Path:
    loaded = onnx.load(str(model))
    props = {entry.key: entry.value for entry in loaded.metadata_props} | changes
    onnx.helper.set_model_props(loaded, props)
    path = folder / f"changed-{len(list(folder.iterdir()))}.onnx"
    onnx.save(loaded, str(path))
    return path


def not_ready_because(client: TestClient) -> str:
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503
    assert client.post("/predict", json={"records": [{}]}).status_code == 503
    return ready.json()["error"]


def test_a_model_whose_classes_or_task_differ_from_the_contract_is_refused_naming_both(
    task, settings_for, tmp_path
):
    data, model = task
    contract = data.contract
    if contract.target.is_classification:
        classes = list(contract.target.classes)
        changes = {
            "reordered": json.dumps(classes[::-1]),  # the indices would map to the wrong classes
            "as_numbers": json.dumps(list(range(len(classes)))),
        }
    else:
        changes = {"a_class_list": json.dumps([0, 1])}
    for name, declared in changes.items():
        path = with_props(model, tmp_path, classes=declared)
        with TestClient(
            create_app(settings_for(contract_path=data.contract_path, model_path=path))
        ) as client:
            error = not_ready_because(client)
        assert declared in error and json.dumps(list(contract.target.classes)) in error, (name, error)
    other = "regression" if contract.target.is_classification else "multiclass_classification"
    path = with_props(model, tmp_path, task=other)
    with TestClient(create_app(settings_for(contract_path=data.contract_path, model_path=path))) as client:
        error = not_ready_because(client)
    assert other in error and contract.task in error


def test_a_model_without_the_outputs_of_the_contracts_task_is_refused(task, settings_for, tmp_path):
    """A regressor behind a classification contract (or the reverse): same inputs, other outputs."""
    data, model = task
    raw = yaml.safe_load(data.contract_path.read_text())
    if data.contract.target.is_classification:
        raw["target"] = {"name": raw["target"]["name"], "task": "regression"}
        missing = "value"
    else:
        raw["target"] = {"name": raw["target"]["name"], "task": "binary_classification", "classes": [0, 1]}
        missing = "label"
    other = tmp_path / "other-task-contract.yaml"
    other.write_text(yaml.safe_dump(raw, sort_keys=False))
    plain = onnx.load(str(model))
    onnx.helper.set_model_props(plain, {"model_name": data.name})  # no task or classes to compare
    path = tmp_path / "plain.onnx"
    onnx.save(plain, str(path))
    settings = settings_for(contract_path=other, model_path=path, app_env="development")
    with TestClient(create_app(settings)) as client:
        error = not_ready_because(client)
    assert f"needs output {missing!r}" in error and raw["target"]["task"] in error
