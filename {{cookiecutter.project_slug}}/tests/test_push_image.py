"""`make image-push` records the pushed image's digest and model version, or fails loudly.

A stand-in `docker` (a small script) plays the registry, so the test needs no engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGEST = "sha256:" + "c" * 64
IMAGE = "registry.example.com/acme/loan-default-model"


def fake_docker(folder: Path, *, push_output: str, repo_digests: list[str], push_fails: bool = False) -> Path:
    inspect = [
        {
            "RepoDigests": repo_digests,
            "Config": {"Labels": {"org.opencontainers.image.version": "20260101000000-abcdef12"}},
        }
    ]
    script = folder / "docker"
    script.write_text(
        f"""#!{sys.executable}
import sys
if sys.argv[1] == "push":
    print({push_output!r})
    sys.exit({1 if push_fails else 0})
if sys.argv[1:3] == ["image", "inspect"]:
    print({json.dumps(inspect)!r})
"""
    )
    script.chmod(0o755)
    return script


def push(tmp_path: Path, docker: Path, tag: str = "0123abc") -> subprocess.CompletedProcess:
    arguments = [
        "--image",
        IMAGE,
        "--tag",
        tag,
        "--docker",
        str(docker),
        "--output",
        str(tmp_path / "image.json"),
    ]
    return subprocess.run(
        [sys.executable, ROOT / "deploy" / "push_image.py", *arguments],
        capture_output=True,
        text=True,
    )


def test_the_record_names_the_digest_the_registry_reported(tmp_path):
    docker = fake_docker(
        tmp_path, push_output="done", repo_digests=[f"other/repo@sha256:{'d' * 64}", f"{IMAGE}@{DIGEST}"]
    )
    result = push(tmp_path, docker)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "image.json").read_text())
    assert record["digest"] == DIGEST
    assert record["reference"] == f"{IMAGE}@{DIGEST}"
    assert record["model_version"] == "20260101000000-abcdef12"


def test_the_push_output_is_the_fallback_for_the_digest(tmp_path):
    docker = fake_docker(tmp_path, push_output=f"0123abc: digest: {DIGEST} size: 1234", repo_digests=[])
    assert push(tmp_path, docker).returncode == 0
    assert json.loads((tmp_path / "image.json").read_text())["digest"] == DIGEST


@pytest.mark.parametrize(
    ("push_output", "push_fails", "message"),
    [("denied: not allowed", True, "denied"), ("pushed", False, "no digest")],
)
def test_a_failed_push_or_a_missing_digest_writes_no_record(tmp_path, push_output, push_fails, message):
    docker = fake_docker(tmp_path, push_output=push_output, repo_digests=[], push_fails=push_fails)
    result = push(tmp_path, docker)
    assert result.returncode == 1 and message in result.stderr + result.stdout
    assert not (tmp_path / "image.json").exists()


def test_a_malformed_tag_is_refused_by_name(tmp_path):
    result = push(tmp_path, fake_docker(tmp_path, push_output="", repo_digests=[]), tag="bad tag;rm")
    assert result.returncode == 2 and "--tag" in result.stderr
