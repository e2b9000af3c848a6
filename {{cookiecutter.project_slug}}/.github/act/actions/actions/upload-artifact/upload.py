"""Stand-in for actions/upload-artifact under act: copy files into this run's artifact folder.

Why: the real action talks to GitHub's artifact service, which an offline act run does not
have. `make ci` points ACT_ARTIFACTS_DIR at reports/act/<workflow>/, shared by every job of
the run, so later jobs can download what earlier ones uploaded and people can open the files.
Like the real action, paths are kept relative to the common folder of everything matched.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
import sys
from pathlib import Path


def collect(lines: list[str], include_hidden: bool) -> tuple[Path, list[Path]]:
    """The files the `path` input selects and the folder their stored paths are relative to."""
    excludes = [line[1:] for line in lines if line.startswith("!")]
    files: set[Path] = set()
    roots: list[Path] = []
    for pattern in (line for line in lines if not line.startswith("!")):
        for match in glob.glob(pattern, recursive=True):
            path = Path(match).resolve()
            roots.append(path if path.is_dir() else path.parent)
            files.update([path] if path.is_file() else (p for p in path.rglob("*") if p.is_file()))
    root = Path(os.path.commonpath([str(r) for r in roots])) if roots else Path.cwd()

    def wanted(path: Path) -> bool:
        relative = path.relative_to(root)
        if not include_hidden and any(part.startswith(".") for part in relative.parts):
            return False
        return not any(fnmatch.fnmatch(str(relative), x) or fnmatch.fnmatch(str(path), x) for x in excludes)

    return root, sorted(path for path in files if wanted(path))


def main() -> int:
    store = os.environ.get("ACT_ARTIFACTS_DIR")
    if not store:
        print("upload-artifact stand-in: ACT_ARTIFACTS_DIR is not set; run act through `make ci`")
        return 1
    name = os.environ.get("ARTIFACT_NAME") or "artifact"
    lines = [line.strip() for line in os.environ.get("ARTIFACT_PATHS", "").splitlines() if line.strip()]
    root, files = collect(lines, os.environ.get("INCLUDE_HIDDEN") == "true")
    if not files:
        message = f"upload-artifact stand-in: no files match {lines} for artifact {name!r}"
        mode = os.environ.get("IF_NO_FILES", "warn")
        if mode == "error":
            print(f"::error::{message}")
            return 1
        if mode == "warn":
            print(f"::warning::{message}")
        return 0
    target = Path(store) / name
    shutil.rmtree(target, ignore_errors=True)
    for path in files:
        destination = target / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
    print(f"upload-artifact stand-in: {len(files)} file(s) -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
