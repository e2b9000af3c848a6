"""The deploy/ overlays as kustomize renders them, with or without the canary component.

The production overlay carries the canary component commented out (deploy/README.md, "Canary
releases"): the tests switch it on the way a person would, by uncommenting those lines in a copy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from governance.core.paths import PATHS

BIN = Path(sys.executable).parent
CANARY_OFF = "# components:\n#   - ../../components/canary\n"
CANARY_ON = "components:\n  - ../../components/canary\n"
ARGUMENT = re.compile(r"\{\{\s*args\.([a-z0-9-]+)\s*\}\}")


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize FOLDER` prints, as Argo CD would apply them."""
    result = subprocess.run([BIN / "kubectl", "kustomize", folder], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def switch_canary_on(deploy: Path, environment: str) -> Path:
    """Uncomment the overlay's canary component in `deploy` (a copy); the overlay's folder."""
    overlay = deploy / "overlays" / environment
    path = overlay / "kustomization.yaml"
    text = path.read_text()
    assert text.count(CANARY_OFF) == 1, f"{path} does not offer the canary component as deploy/README.md says"
    path.write_text(text.replace(CANARY_OFF, CANARY_ON))
    return overlay


def deploy_copy(into: Path) -> Path:
    """A copy of this project's deploy/ manifests (the overlays refer to ../../base by path)."""
    target = into / "deploy"
    shutil.copytree(PATHS.root / "deploy", target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [obj["kind"] for obj in objects]
    assert len(kinds) == len(set(kinds)), f"one object per kind expected, got {kinds}"
    return {obj["kind"]: obj for obj in objects}


def resolve(text: str, arguments: dict[str, str]) -> str:
    """The AnalysisTemplate's argument placeholders (ARGUMENT) replaced as an AnalysisRun resolves them."""
    return ARGUMENT.sub(lambda match: arguments[match[1]], text)
