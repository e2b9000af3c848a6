"""deploy/ renders to valid Kubernetes objects whose settings the service accepts.

An overlay edit that breaks kustomize, a field Kubernetes does not know, or an environment
variable the app would ignore (or refuse) is caught here rather than by a failed rollout.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.settings import Settings
from governance.core.paths import PATHS

ROOT = PATHS.root
BIN = Path(sys.executable).parent
ENVIRONMENTS = ("staging", "production")


def render(environment: str) -> list[dict]:
    result = subprocess.run(
        [BIN / "kubectl", "kustomize", PATHS.overlays / environment],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_overlay_renders_objects_that_pass_the_kubernetes_schemas(environment, tmp_path):
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(render(environment)))
    result = subprocess.run(
        [BIN / "kubernetes-validate", "--strict", "--quiet", manifest], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def a_key_file(tmp_path: Path) -> str:
    """What the mounted Secret holds (its path inside the pod does not exist here)."""
    path = tmp_path / "feedback-key"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    return str(path)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_service_accepts_every_setting_the_config_map_gives_it(environment, monkeypatch, tmp_path):
    objects = render(environment)
    (config_map,) = [obj for obj in objects if obj["kind"] == "ConfigMap"]
    known = {name.upper() for name in Settings.model_fields}
    unknown = sorted(set(config_map["data"]) - known)
    assert not unknown, f"the app ignores {unknown}: settings are {sorted(known)}"
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    secrets_mounted = {
        mount["mountPath"]
        for mount in pod["containers"][0]["volumeMounts"]
        for volume in pod["volumes"]
        if volume["name"] == mount["name"] and "secret" in volume
    }
    key_file = Path(config_map["data"]["FEEDBACK_KEY_FILE"])
    assert str(key_file.parent) in secrets_mounted, "the feedback key is read from the mounted Secret"
    for name, value in config_map["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FEEDBACK_KEY_FILE", a_key_file(tmp_path))
    settings = Settings()
    assert settings.app_env == "production" and settings.capture_enabled
    assert settings.port == 8080
    assert settings.grpc_port == 8081  # deployment.yaml's `grpc` port and liveness probe


def test_the_compose_stack_uses_settings_the_service_accepts(monkeypatch, tmp_path):
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    (service,) = compose["services"].values()
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, str(value))
    assert service["environment"]["FEEDBACK_KEY_FILE"] == "/run/secrets/feedback_key"
    assert service["secrets"] == ["feedback_key"] and "feedback_key" in compose["secrets"]
    monkeypatch.setenv("FEEDBACK_KEY_FILE", a_key_file(tmp_path))
    assert Settings().capture_enabled
    assert set(service["environment"]) <= {name.upper() for name in Settings.model_fields}
