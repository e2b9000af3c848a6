"""Re-resolve the generated project's hashed locks for every offered Python version.

The project's pyproject.toml is a template, so we bake the defaults, let the baked
project's own `make lock` resolve it, and copy the locks back under
``requirements/py<version>-<detector>/``; the post-generation hook keeps the chosen set.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "{{cookiecutter.project_slug}}" / "requirements"


def main() -> int:
    choices = json.loads((ROOT / "cookiecutter.json").read_text())
    for version, detector in itertools.product(choices["python_version"], choices["drift_detector"]):
        with tempfile.TemporaryDirectory() as scratch:
            project = Path(
                cookiecutter(
                    str(ROOT),
                    no_input=True,
                    output_dir=scratch,
                    extra_context={"python_version": version, "drift_detector": detector, "git_init": "no"},
                )
            )
            print(f"==> resolving locks for Python {version} with the {detector} detector", flush=True)
            subprocess.run(["make", "lock", f"PYTHON_VERSION={version}"], cwd=project, check=True)
            target = LOCKS / f"py{version}-{detector}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for lock in sorted((project / "requirements").glob("*.txt")):
                shutil.copyfile(lock, target / lock.name)
                print(f"    {target.relative_to(ROOT)}/{lock.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
