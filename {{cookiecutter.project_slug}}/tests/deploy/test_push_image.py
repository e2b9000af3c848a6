"""`mlops image-push` records the pushed image's digest and model version, or fails loudly.

A stand-in `docker` (tests/deploy/conftest.py) plays the registry, so the test needs no engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from governance import cli
from tests.support.docker import FakeDocker

DIGEST = "sha256:" + "c" * 64
IMAGE = "registry.example.com/acme/loan-default-model"
VERSION = "20260101000000-abcdef12"


def inspected(repo_digests: list[str]) -> str:
    return json.dumps(
        [{"RepoDigests": repo_digests, "Config": {"Labels": {"org.opencontainers.image.version": VERSION}}}]
    )


def push(docker: Path, output: Path, tag: str = "0123abc") -> int:
    return cli.main(
        ["image-push", "--image", IMAGE, "--tag", tag, "--docker", str(docker), "--output", str(output)]
    )


def test_the_record_names_the_digest_the_registry_reported(fake_docker, tmp_path):
    fake_docker.answer("push", "done")
    fake_docker.answer("image inspect", inspected([f"other/repo@sha256:{'d' * 64}", f"{IMAGE}@{DIGEST}"]))
    assert push(fake_docker.path, tmp_path / "image.json") == 0
    record = json.loads((tmp_path / "image.json").read_text())
    assert record["digest"] == DIGEST
    assert record["reference"] == f"{IMAGE}@{DIGEST}"
    assert record["model_version"] == VERSION
    assert fake_docker.called("push") == [["push", f"{IMAGE}:0123abc"]]


def test_the_push_output_is_the_fallback_for_the_digest(fake_docker, tmp_path):
    fake_docker.answer("push", f"0123abc: digest: {DIGEST} size: 1234")
    fake_docker.answer("image inspect", inspected([]))
    assert push(fake_docker.path, tmp_path / "image.json") == 0
    assert json.loads((tmp_path / "image.json").read_text())["digest"] == DIGEST


def test_podman_reports_the_registry_digest_through_its_digest_file(tmp_path):
    podman = FakeDocker(tmp_path / "podman-engine", name="podman")
    podman.answer("push", "Writing manifest to image destination", files={"--digestfile": DIGEST})
    podman.answer("image inspect", inspected([f"{IMAGE}@sha256:{'e' * 64}"]))  # a local digest
    assert push(podman.path, tmp_path / "image.json") == 0
    assert json.loads((tmp_path / "image.json").read_text())["digest"] == DIGEST


@pytest.mark.parametrize(
    ("push_output", "push_code", "message"),
    [("denied: not allowed", 1, "denied"), ("pushed", 0, "no digest")],
)
def test_a_failed_push_or_a_missing_digest_writes_no_record(
    fake_docker, tmp_path, capsys, push_output, push_code, message
):
    fake_docker.answer("push", push_output, code=push_code)
    fake_docker.answer("image inspect", inspected([]))
    assert push(fake_docker.path, tmp_path / "image.json") == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error
    assert not (tmp_path / "image.json").exists()


def test_a_malformed_tag_is_refused_by_name_before_anything_is_pushed(fake_docker, tmp_path, capsys):
    assert push(fake_docker.path, tmp_path / "image.json", tag="bad tag;rm") == 2
    assert "--tag" in capsys.readouterr().err
    assert fake_docker.calls == []


def test_a_missing_engine_is_named(tmp_path, capsys):
    assert push(tmp_path / "no-such-docker", tmp_path / "image.json") == 2
    assert "no-such-docker` is not on PATH" in capsys.readouterr().err
