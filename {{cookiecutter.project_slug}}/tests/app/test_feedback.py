"""/feedback labels only predictions the sender received: feedback tokens, API keys, the key's settings.

The labels become the retraining set, so a label for a guessed prediction is an attack on the
next model: every refusal here must be a 4xx that names the field and the rule, and must leave
nothing in the capture.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings
from tests.support.serving import MODEL_NAME, infer_body, read_capture, sample_records

ROOT = Path(__file__).resolve().parents[2]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(request_id: str, row: int, key: bytes) -> str:
    """A token as the service makes one, with any key: HMAC-SHA256 by the hmac module."""
    return f"{request_id}.{row}.{b64(hmac.digest(key, f'{request_id}:{row}'.encode(), 'sha256')[:16])}"


def key_file(folder: Path, *keys: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"keys-{secrets.token_hex(4)}"
    path.write_text("".join(key + "\n" for key in keys))
    return path


def labels_in(capture: Path) -> list[dict[str, Any]]:
    return [row for row in read_capture(capture) if row["kind"] == "feedback"] if capture.exists() else []


def predict(client: TestClient, contract, rows: int = 2) -> dict[str, Any]:
    response = client.post("/predict", json={"records": sample_records(contract, rows, seed=4)})
    assert response.status_code == 200, response.text
    return response.json()


def refused(response, status: int, field: str, rule: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["field"], body["rule"]) == (field, rule), body
    assert field in body["error"]


# -- a real answer's token is accepted ---------------------------------------------------------------------
def test_every_prediction_carries_a_token_that_labels_exactly_that_row(labels, settings_for, contract):
    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        answer = predict(client, contract, rows=3)
        tokens = [prediction["feedback_token"] for prediction in answer["predictions"]]
        assert len(set(tokens)) == 3
        response = client.post("/feedback", json={"feedback_token": tokens[2], "label": labels[1]})
    assert response.status_code == 202 and response.json() == {"recorded": 1}
    [label] = labels_in(Path(settings.capture_uri))
    assert (label["request_id"], label["row"], label["label"]) == (answer["request_id"], 2, labels[1])
    assert label["prediction_id"] == f"{answer['request_id']}:2"
    assert label["labelled_by"] is None


def test_the_oip_answer_carries_the_row_tokens_in_its_parameters(labels, settings_for, contract):
    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        body = infer_body(contract, sample_records(contract, 3))
        answer = client.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
        parameters = answer.json()["parameters"]
        assert all(type(value) is str for value in parameters.values()), "OIP parameters are scalars"
        tokens = parameters["feedback_tokens"].split(",")
        assert len(tokens) == 3
        sent = [{"feedback_token": token, "label": labels[row % 2]} for row, token in enumerate(tokens)]
        assert client.post("/feedback", json=sent).status_code == 202
    stored = {(row["prediction_id"], row["label"]) for row in labels_in(Path(settings.capture_uri))}
    assert stored == {(f"{parameters['request_id']}:{row}", labels[row % 2]) for row in range(3)}


def test_a_token_verifies_on_every_replica_that_shares_the_key_and_after_a_key_rotation(
    labels, settings_for, contract, tmp_path
):
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with TestClient(create_app(settings_for(feedback_key_file=key_file(tmp_path, old)))) as replica:
        token = predict(replica, contract)["predictions"][0]["feedback_token"]
    with TestClient(create_app(settings_for(feedback_key_file=key_file(tmp_path, old)))) as other:
        assert other.post("/feedback", json={"feedback_token": token, "label": labels[0]}).status_code == 202
    rotated = key_file(tmp_path, new, old)  # the new key signs, the old one still verifies
    with TestClient(create_app(settings_for(feedback_key_file=rotated))) as client:
        assert client.post("/feedback", json={"feedback_token": token, "label": labels[0]}).status_code == 202
        fresh = predict(client, contract)["predictions"][0]["feedback_token"]
    request_id, row, _ = fresh.split(".")
    assert fresh == signed(request_id, int(row), new.encode()), "the first key of the file signs"


@pytest.mark.parametrize("length", [32, 64, 65, 200])  # shorter, equal to and longer than SHA-256's block
def test_tokens_are_the_hmac_modules_hmac_sha256_of_request_id_and_row(length):
    from app.feedback import FeedbackTokens

    key = secrets.token_urlsafe(length)[:length].encode()
    tokens = FeedbackTokens([key]).issue("0123456789abcdef", 12)
    assert tokens == [signed("0123456789abcdef", row, key) for row in range(12)]
    assert len({token.rsplit(".", 1)[1] for token in tokens}) == 12


# -- guessed, forged or malformed tokens are refused, and nothing is captured ------------------------------
def forgeries(answer: dict[str, Any]) -> dict[str, tuple[Any, int, str]]:
    """name -> (token, status, rule), each built from what a client can see or guess."""
    request_id = answer["request_id"]
    token = answer["predictions"][0]["feedback_token"]
    assert token.startswith(f"{request_id}.0.")
    tag = token.rsplit(".", 1)[1]
    neighbour = request_id[:-1] + ("1" if request_id[-1] == "0" else "0")  # the counter's next or previous
    flipped = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    return {
        "guessed_tag": (f"{request_id}.0.{b64(os.urandom(16))}", 403, "signature"),
        "another_rows_token_with_this_tag": (f"{request_id}.1.{tag}", 403, "signature"),
        "a_row_past_the_batch": (f"{request_id}.99999999.{tag}", 403, "signature"),
        "next_request_id": (f"{neighbour}.0.{tag}", 403, "signature"),
        "signed_with_another_key": (signed(request_id, 0, secrets.token_bytes(32)), 403, "signature"),
        "tag_altered": (f"{request_id}.0.{flipped}", 403, "signature"),
        "request_id_as_token": (request_id, 422, "format"),
        "no_tag": (f"{request_id}.0", 422, "format"),
        "short_tag": (f"{request_id}.0.{tag[:-1]}", 422, "format"),
        "not_base64url": (f"{request_id}.0.{tag[:-1]}+", 422, "format"),
        "leading_zero_row": (f"{request_id}.00.{tag}", 422, "format"),
        "negative_row": (f"{request_id}.-1.{tag}", 422, "format"),
        "non_ascii_digit_row": (f"{request_id}.\u0660.{tag}", 422, "format"),  # ARABIC-INDIC DIGIT ZERO
        "trailing_newline": (f"{token}\n", 422, "format"),
        "empty": ("", 422, "format"),
        "a_number": (12345, 422, "format"),
        "a_list": ([token], 422, "format"),
        "too_long": (f"{'a' * 5000}.0.{tag}", 422, "format"),
    }


def test_guessed_forged_or_malformed_tokens_are_refused_with_a_4xx_and_nothing_is_captured(
    labels, settings_for, contract
):
    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        answer = predict(client, contract)
        for name, (token, status, rule) in forgeries(answer).items():
            response = client.post("/feedback", json={"feedback_token": token, "label": labels[1]})
            assert response.status_code == status, (name, response.text)
            refused(response, status, "body.feedback_token", rule)
        # The body the review found accepted: a made-up request id and row.
        guessed = client.post(
            "/feedback", json={"request_id": "anything", "row": 99999999, "label": labels[1]}
        )
        refused(guessed, 422, "body.request_id", "unknown_field")
        # One forged label spoils the batch: nothing of it is recorded.
        valid = answer["predictions"][0]["feedback_token"]
        forged = forgeries(answer)["another_rows_token_with_this_tag"][0]
        batch = [
            {"feedback_token": valid, "label": labels[1]},
            {"feedback_token": forged, "label": labels[0]},
        ]
        refused(client.post("/feedback", json=batch), 403, "[1].feedback_token", "signature")
    assert labels_in(Path(settings.capture_uri)) == []


def test_an_attacker_with_one_token_cannot_label_the_neighbouring_rows(labels, settings_for, contract):
    """Request ids are a counter after a random prefix; holding one token must not reach the next."""
    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        mine = predict(client, contract, rows=1)
        theirs = predict(client, contract, rows=1)
        tag = mine["predictions"][0]["feedback_token"].rsplit(".", 1)[1]
        for request_id in (theirs["request_id"], mine["request_id"]):
            for row in (0, 1):
                if (request_id, row) == (mine["request_id"], 0):
                    continue
                token = f"{request_id}.{row}.{tag}"
                response = client.post("/feedback", json={"feedback_token": token, "label": labels[1]})
                refused(response, 403, "body.feedback_token", "signature")
    assert labels_in(Path(settings.capture_uri)) == []


# -- the same prediction labelled twice: both lines stay (which counts is the reader's policy) -------------
def test_a_relabel_is_kept_in_the_capture_and_the_first_label_counts_unless_the_policy_says(
    labels, settings_for, contract
):
    from monitoring.capture import read_window

    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        answer = predict(client, contract)
        token = answer["predictions"][1]["feedback_token"]
        for label in labels[:2]:  # the outcome, then someone holding the token tries to change it
            assert client.post("/feedback", json={"feedback_token": token, "label": label}).status_code == 202
    prediction = f"{answer['request_id']}:1"
    lines = labels_in(Path(settings.capture_uri))
    assert [(row["prediction_id"], row["label"]) for row in lines] == [
        (prediction, labels[0]),
        (prediction, labels[1]),
    ]
    target = contract.target.name
    window = read_window(settings.capture_uri, contract=contract).set_index("prediction_id")
    assert window.loc[prediction, target] == labels[0] and window.loc[prediction, "relabelled"]
    assert window[target].notna().sum() == 1
    newest = read_window(settings.capture_uri, contract=contract, relabel="last_wins")
    assert newest.set_index("prediction_id").loc[prediction, target] == labels[1]


# -- optional API keys ---------------------------------------------------------------------------------
def test_the_api_key_is_required_when_configured(labels, settings_for, contract, tmp_path):
    api_key = secrets.token_urlsafe(24)
    keys = key_file(tmp_path, "# one key per client", api_key, secrets.token_urlsafe(24))
    settings = settings_for(feedback_api_keys_file=keys)
    with TestClient(create_app(settings)) as client:
        answer = predict(client, contract)  # scoring needs no key
        label = {"feedback_token": answer["predictions"][0]["feedback_token"], "label": labels[1]}
        for headers, rule in (
            ({}, "required"),
            ({"authorization": f"Basic {api_key}"}, "scheme"),
            ({"authorization": "Bearer"}, "scheme"),
            ({"authorization": f"Bearer {api_key}x"}, "unknown_key"),
            ({"authorization": f"Bearer {secrets.token_urlsafe(24)}"}, "unknown_key"),
        ):
            response = client.post("/feedback", json=label, headers=headers)
            refused(response, 401, "authorization", rule)
            assert response.headers["www-authenticate"].startswith("Bearer")
        accepted = client.post("/feedback", json=label, headers={"authorization": f"Bearer {api_key}"})
        assert accepted.status_code == 202, accepted.text
        schema = client.get("/openapi.json").json()
    [line] = labels_in(Path(settings.capture_uri))
    assert line["labelled_by"] == f"sha256:{hashlib.sha256(api_key.encode()).hexdigest()[:12]}"
    text = "".join(path.read_text() for path in Path(settings.capture_uri).glob("date=*/*.jsonl"))
    assert api_key not in text, "the capture records a fingerprint, never the key"
    assert schema["paths"]["/feedback"]["post"]["security"] == [{"HTTPBearer": []}]


def test_without_api_keys_feedback_needs_no_authorization_and_the_schema_declares_none(client):
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/feedback"]["post"]
    assert "security" not in post
    body = post["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0]
    assert body["required"] == ["feedback_token", "label"]
    assert {"401", "403", "422"} <= set(post["responses"])
    answer = schema["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "feedback_token" in answer["properties"]["predictions"]["items"]["required"]


# -- the key's settings --------------------------------------------------------------------------------
def test_production_without_a_feedback_key_refuses_to_start(monkeypatch):
    monkeypatch.delenv("FEEDBACK_KEY_FILE")
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(ValidationError, match="FEEDBACK_KEY_FILE is not set"):
        Settings()
    env = {name: value for name, value in os.environ.items() if name != "FEEDBACK_KEY_FILE"}
    result = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("invalid settings:") and "FEEDBACK_KEY_FILE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_development_without_a_key_signs_with_a_random_key_of_the_process_and_warns(
    labels, settings_for, contract, monkeypatch, caplog
):
    monkeypatch.delenv("FEEDBACK_KEY_FILE")
    with caplog.at_level(logging.WARNING, logger="app"):
        app = create_app(settings_for(app_env="development"))
    assert any("FEEDBACK_KEY_FILE is not set" in record.getMessage() for record in caplog.records)
    with TestClient(app) as client:
        token = predict(client, contract)["predictions"][0]["feedback_token"]
        assert client.post("/feedback", json={"feedback_token": token, "label": labels[1]}).status_code == 202
    with TestClient(create_app(settings_for(app_env="development"))) as restarted:
        refused(
            restarted.post("/feedback", json={"feedback_token": token, "label": labels[1]}),
            403,
            "body.feedback_token",
            "signature",
        )


@pytest.mark.parametrize(
    ("variable", "content", "words"),
    [
        ("FEEDBACK_KEY_FILE", None, "cannot be read"),
        ("FEEDBACK_KEY_FILE", "\n# only a comment\n", "holds no key"),
        ("FEEDBACK_KEY_FILE", "short\n", "fewer than 32"),
        ("FEEDBACK_API_KEYS_FILE", "", "holds no key"),
        ("FEEDBACK_API_KEYS_FILE", "tiny\n", "fewer than 16"),
    ],
    ids=["missing", "only_comments", "short_key", "empty_api_keys", "short_api_key"],
)
def test_an_unusable_key_file_stops_the_service_naming_the_variable_and_the_file(
    monkeypatch, tmp_path, variable, content, words
):
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv(variable, str(path))
    monkeypatch.setenv("APP_ENV", "development")  # refused in every environment
    with pytest.raises(ValidationError, match=words) as refused_settings:
        Settings()
    assert variable.lower() in str(refused_settings.value) and str(path) in str(refused_settings.value)
