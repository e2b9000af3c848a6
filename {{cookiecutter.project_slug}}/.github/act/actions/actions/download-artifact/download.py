"""Stand-in for actions/download-artifact under act: copy artifacts of this run back.

Reads what the upload stand-in stored under ACT_ARTIFACTS_DIR (see upload.py for why).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
from pathlib import Path


def main() -> int:
    store = os.environ.get("ACT_ARTIFACTS_DIR")
    if not store:
        print("download-artifact stand-in: ACT_ARTIFACTS_DIR is not set; run act through `make ci`")
        return 1
    folder, name = Path(store), os.environ.get("ARTIFACT_NAME", "")
    destination = Path(os.environ.get("DESTINATION") or ".")
    if name:
        if not (folder / name).is_dir():
            print(f"::error::download-artifact stand-in: no artifact named {name!r} in {folder}")
            return 1
        shutil.copytree(folder / name, destination, dirs_exist_ok=True)
    else:
        pattern = os.environ.get("ARTIFACT_PATTERN") or "*"
        merge = os.environ.get("MERGE") == "true"
        for artifact in sorted(
            p for p in folder.iterdir() if p.is_dir() and fnmatch.fnmatch(p.name, pattern)
        ):
            shutil.copytree(
                artifact, destination if merge else destination / artifact.name, dirs_exist_ok=True
            )
    print(
        f"download-artifact stand-in: {name or os.environ.get('ARTIFACT_PATTERN') or 'all'} -> {destination}"
    )
    with open(os.environ["GITHUB_OUTPUT"], "a") as output:
        output.write(f"download-path={destination.resolve()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
