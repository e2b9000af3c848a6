"""Re-resolve the generated project's hashed locks for every offered Python version.

The project's pyproject.toml is a template, so we bake the defaults, let the baked
project's own `make lock` resolve it, and copy the locks back under
``requirements/py<version>/``; the post-generation hook keeps the chosen version's set.
"""

from __future__ import annotations

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
    versions = json.loads((ROOT / "cookiecutter.json").read_text())["python_version"]
    for version in versions:
        with tempfile.TemporaryDirectory() as scratch:
            project = Path(
                cookiecutter(
                    str(ROOT),
                    no_input=True,
                    output_dir=scratch,
                    extra_context={"python_version": version, "git_init": "no"},
                )
            )
            print(f"==> resolving locks for Python {version}", flush=True)
            subprocess.run(["make", "lock", f"PYTHON_VERSION={version}"], cwd=project, check=True)
            target = LOCKS / f"py{version}"
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for lock in sorted((project / "requirements").glob("*.txt")):
                shutil.copyfile(lock, target / lock.name)
                print(f"    {target.relative_to(ROOT)}/{lock.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
