"""Shape the generated project to the answers: prune what was not picked, then git init.

Like the pre-generation hook, it reads the answers as data (``tojson`` into ``json.loads``)
and runs git with argument lists, never through a shell, so no answer is ever executed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

CONTEXT = json.loads(r"""{{ cookiecutter | tojson }}""")
PROJECT = Path.cwd()


def select_locks(python_version: str, detector: str) -> None:
    """Keep the hashed locks resolved for the chosen Python and detector; drop the others.

    With the scipy detector, alibi-detect (Business Source License) is not even installed.
    """
    locks = PROJECT / "requirements"
    chosen = locks / f"py{python_version}-{detector}"
    for lock in chosen.glob("*.txt"):
        shutil.move(str(lock), locks / lock.name)
    for folder in locks.glob("py3.*"):
        shutil.rmtree(folder)


def bring_user_data(data_path: str, output_dir: str) -> None:
    """Copy the user's CSV/Parquet into data/raw/ so the project is self-contained."""
    source = Path(data_path).expanduser()
    if not source.is_absolute():
        source = Path(output_dir) / source
    target = PROJECT / "data" / "raw" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def git_init(author: str, email: str) -> None:
    """Initialise a repository with one commit; say so and go on if git is missing."""
    if shutil.which("git") is None:
        print("NOTE: git was not found; skipped 'git init'.", file=sys.stderr)
        return
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", author),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", email),
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", author),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", email),
    }
    for args in (
        ["git", "init", "--quiet", "--initial-branch=main"],
        ["git", "add", "--all"],
        ["git", "commit", "--quiet", "--no-verify", "--message", "Initial commit from the MLOps template"],
    ):
        subprocess.run(args, cwd=PROJECT, env=env, check=True)


def main() -> None:
    select_locks(CONTEXT["python_version"], CONTEXT["drift_detector"])
    if CONTEXT["license"] == "Proprietary":
        (PROJECT / "LICENSE").unlink()
    if CONTEXT["data_source"] == "file":
        bring_user_data(CONTEXT["data_path"], CONTEXT.get("_output_dir") or ".")
    # cruft renders the template again (into temporary folders) to compute an update; it sets
    # `_commit`, and a repository created there would turn its diff into a diff of .git itself.
    if CONTEXT["git_init"] == "yes" and not CONTEXT.get("_commit"):
        git_init(CONTEXT["author_name"], CONTEXT["author_email"])


if __name__ == "__main__":
    main()
