"""Shape the generated project to the answers: prune what was not picked, prove that every
structured file parses, then git init.

Like the pre-generation hook, it reads the answers as data (``tojson`` into ``json.loads``)
and runs git with argument lists, never through a shell, so no answer is ever executed.
The answers are parsed in ``main``, not on import, so tests can import the helpers below
from the unrendered file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import yaml  # PyYAML: a dependency of cookiecutter itself

ANSWERS = r"""{{ cookiecutter | tojson }}"""
PROJECT = Path.cwd()

# Every TOML, YAML and JSON file of the project must parse, and hold no lone surrogate (what a
# JSON-style \ud83d escape becomes in YAML and JSON). GitHub workflows, whose expressions open
# with a dollar and two braces, are plain YAML. The document templates are Jinja, parsed only
# once the project renders them.
PARSERS: dict[str, Callable[[str], object]] = {
    ".toml": tomllib.loads,
    ".yaml": lambda text: list(yaml.safe_load_all(text)),
    ".yml": lambda text: list(yaml.safe_load_all(text)),
    ".json": json.loads,
}
NOT_PARSED = ("governance/templates/",)


class Unparsable(Exception):
    """A generated file does not parse; the message names the file and the parser's complaint."""


def lone_surrogate(value: object) -> str | None:
    """The first text in a parsed document that holds half of a surrogate pair, if any."""
    if isinstance(value, str):
        return value if any(0xD800 <= ord(char) <= 0xDFFF for char in value) else None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        for item in value:
            found = lone_surrogate(item)
            if found is not None:
                return found
    return None


def check_structured_files(root: Path) -> list[str]:
    """Parse every TOML, YAML and JSON file under ``root``; return the relative paths checked.

    Raises ``Unparsable`` naming the first file that does not parse (or holds a lone surrogate).
    """
    checked = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        parse = PARSERS.get(path.suffix)
        if parse is None or not path.is_file() or ".git" in path.relative_to(root).parts:
            continue
        if relative.startswith(NOT_PARSED):
            continue
        try:
            document = parse(path.read_text(encoding="utf-8"))
        except (ValueError, yaml.YAMLError) as error:  # TOML, JSON and decoding errors are ValueErrors
            reason = " ".join(str(error).split())
            raise Unparsable(f"{relative} is not valid {path.suffix[1:].upper()}: {reason}") from None
        broken = lone_surrogate(document)
        if broken is not None:
            raise Unparsable(f"{relative} holds a broken character (a lone surrogate) in {broken!r}")
        checked.append(relative)
    return checked


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


def main() -> int:
    context = json.loads(ANSWERS)
    select_locks(context["python_version"], context["drift_detector"])
    if context["license"] == "Proprietary":
        (PROJECT / "LICENSE").unlink()
    if context["data_source"] == "file":
        bring_user_data(context["data_path"], context.get("_output_dir") or ".")
    try:
        check_structured_files(PROJECT)
    except Unparsable as error:
        print(f"ERROR: the generated project is broken: {error}", file=sys.stderr)
        return 1
    # cruft renders the template again (into temporary folders) to compute an update; it sets
    # `_commit`, and a repository created there would turn its diff into a diff of .git itself.
    if context["git_init"] == "yes" and not context.get("_commit"):
        git_init(context["author_name"], context["author_email"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
