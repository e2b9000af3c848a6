"""`make champion`: the production model is copied out of the image the production overlay pins,
and installed only when its sha256 is the registered one. A stub `docker` on PATH stands in
for the engine and records every call."""

import hashlib
import re
import shutil
import stat

import pytest
import yaml

from governance import champion
from governance.cli import main
from governance.core.paths import Paths
from tests.support.training import PROJECT

VERSION = "20240131000000-abcdef12"
DIGEST = "sha256:" + "d" * 64
IMAGE = "registry.example/loan-default-model"
MODEL = b"the champion's ONNX bytes"
STUB = """#!/bin/sh
echo "$*" >> "$STUB_LOG"
case "$1" in
  image) exit "${STUB_INSPECT_RC:-1}" ;;
  pull) [ "${STUB_PULL_RC:-0}" = 0 ] && exit 0; echo "denied: permission_denied: read_package" >&2; exit 1 ;;
  create) echo "c0ffee" ;;
  cp) cp "$STUB_MODEL" "$3" ;;
  rm) ;;
  *) exit 64 ;;
esac
"""


@pytest.fixture
def production_entry(make_entry):
    """The registry's production entry for MODEL (keyword changes: stage, image_digest)."""

    def build(stage="production", image_digest=None):
        sha256 = hashlib.sha256(MODEL).hexdigest()
        return make_entry(VERSION, stage, sha256=sha256, metrics={"roc_auc": 0.81}, image_digest=image_digest)

    return build


@pytest.fixture
def project(tmp_path, monkeypatch, production_entry, write_registry):
    """A project with a production entry, an overlay pinning DIGEST, and the stub engine on PATH."""
    root = tmp_path / "project"
    overlay = champion.production_overlay(Paths(root))
    overlay.parent.mkdir(parents=True)
    overlay.write_text(yaml.safe_dump({"images": [{"name": "app", "newName": IMAGE, "digest": DIGEST}]}))
    write_registry(root, [production_entry()])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "docker"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    image_model = tmp_path / "image-model.onnx"
    image_model.write_bytes(MODEL)
    log = tmp_path / "docker.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("STUB_LOG", str(log))
    monkeypatch.setenv("STUB_MODEL", str(image_model))
    return root, log, image_model


def calls(log):
    return log.read_text().splitlines()


def landed(root):
    return root / "artifacts" / "models" / VERSION / "model.onnx"


def fetch(root, *options):
    """`mlops champion` on the project at root: its exit code."""
    return main(["--root", str(root), "champion", *options])


def test_the_model_lands_from_the_pinned_image_with_its_sha_verified(project, capsys):
    root, log, _ = project
    assert fetch(root) == 0
    assert landed(root).read_bytes() == MODEL
    reference = f"{IMAGE}@{DIGEST}"
    assert calls(log) == [
        f"image inspect {reference}",
        f"pull {reference}",
        f"create {reference}",
        f"cp c0ffee:{champion.MODEL_IN_IMAGE} {calls(log)[3].split()[-1]}",
        "rm c0ffee",
    ]
    assert "sha256" in capsys.readouterr().err  # progress goes to stderr
    assert [path.name for path in landed(root).parent.iterdir()] == ["model.onnx"]  # no staging left


def test_a_local_image_is_not_pulled_and_a_verified_file_is_not_fetched_again(project, monkeypatch):
    root, log, _ = project
    monkeypatch.setenv("STUB_INSPECT_RC", "0")
    assert champion.fetch_champion(Paths(root), say=lambda _: None) == landed(root).resolve()
    assert not any(call.startswith("pull") for call in calls(log))
    log.write_text("")
    assert fetch(root) == 0
    assert calls(log) == []


def test_an_image_holding_another_model_is_refused(project, capsys):
    root, log, image_model = project
    image_model.write_bytes(b"some other model")
    assert fetch(root) == 1  # a check said no
    err = capsys.readouterr().err
    assert "refused" in err and hashlib.sha256(MODEL).hexdigest() in err
    assert not landed(root).exists()
    assert calls(log)[-1] == "rm c0ffee"  # the container is removed either way
    # --optional never waives an integrity failure
    assert fetch(root, "--optional") == 1
    with pytest.raises(champion.ChampionRefused, match="refused"):
        champion.fetch_champion(Paths(root), optional=True, say=lambda _: None)
    assert not landed(root).exists()


def test_the_placeholder_digest_means_no_champion_yet(project, capsys):
    root, log, _ = project
    overlay = champion.production_overlay(Paths(root))
    shutil.copy(champion.production_overlay(Paths(PROJECT)), overlay)  # the project's own overlay,
    # as baked, whatever this project has deployed since
    overlay.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, overlay.read_text()))
    assert fetch(root) == 0
    assert "no champion deployed yet" in capsys.readouterr().err
    assert calls(log) == []


def test_no_production_entry_means_no_champion_yet(project, production_entry, write_registry, capsys):
    root, log, _ = project
    write_registry(root, [production_entry(stage="staging")])
    assert champion.fetch_champion(Paths(root)) is None
    assert "no production entry" in capsys.readouterr().out
    assert calls(log) == []


def test_a_denied_pull_fails_with_how_to_log_in_unless_optional(project, monkeypatch, capsys):
    root, _, _ = project
    monkeypatch.setenv("STUB_PULL_RC", "1")
    assert fetch(root) == 2  # the model could not be obtained
    err = capsys.readouterr().err
    assert "permission_denied" in err and "make registry-login" in err
    assert fetch(root, "--optional") == 0
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert "warning:" in said and "permission_denied" in said and "regression_fallback" in said
    assert not landed(root).exists()


def test_without_an_engine_it_says_so(project, capsys):
    root, _, _ = project
    assert fetch(root, "--docker", "no-such-engine") == 2
    assert "no container engine" in capsys.readouterr().err


def test_an_overlay_and_registry_that_disagree_are_refused(project, production_entry, write_registry, capsys):
    root, log, _ = project
    write_registry(root, [production_entry(image_digest="sha256:" + "e" * 64)])
    assert fetch(root) == 2
    assert "disagree" in capsys.readouterr().err
    assert calls(log) == []


def test_a_broken_registry_is_an_input_error(project, capsys):
    root, log, _ = project
    (root / "governance" / "registry.yaml").write_text("version: 1\nmodels: [{stage: production}]\n")
    assert fetch(root) == 2
    assert "field 'models[0].version'" in capsys.readouterr().err
    assert calls(log) == []
