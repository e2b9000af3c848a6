"""A throw-away checkout of main for the GitOps tests: registry entries and deploy/ files, one commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from governance import registry
from governance.core.paths import Paths
from governance.core.records import Registry

GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@example.com")


def commit_checkout(root: Path, models: list[dict[str, Any]]) -> Path:
    """`root` (holding what the test copied in) as a checkout of main whose registry holds `models`."""
    (root / "governance").mkdir(parents=True, exist_ok=True)
    registry.save(Registry.model_validate({"version": 1, "models": models}), Paths(root).registry)
    subprocess.run([*GIT, "init", "--quiet", "--initial-branch=main"], cwd=root, check=True)
    subprocess.run([*GIT, "add", "--all"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "--quiet", "--message", "init"], cwd=root, check=True)
    return root
