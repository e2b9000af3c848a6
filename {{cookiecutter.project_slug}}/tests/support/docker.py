"""A stand-in `docker` client: building, testing and pushing the image are checked without an engine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPT = """#!PYTHON
import json, sys
from pathlib import Path

here = Path(__file__).resolve().parent
args = sys.argv[1:]
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps(args) + "\\n")
answers = json.loads((here / "answers.json").read_text())
for length in (2, 1):
    answer = answers.get(" ".join(args[:length]))
    if answer is not None:
        for flag, content in answer["files"].items():
            Path(args[args.index(flag) + 1]).write_text(content)
        print(answer["stdout"])
        print(answer["stderr"], file=sys.stderr)
        sys.exit(answer["code"])
print(f"stand-in docker: no answer for {args}", file=sys.stderr)
sys.exit(125)
"""


class FakeDocker:
    """A `docker` executable that answers each subcommand as told and logs every call it gets."""

    def __init__(self, folder: Path, name: str = "docker") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / name
        self.path.write_text(SCRIPT.replace("PYTHON", sys.executable, 1))
        self.path.chmod(0o755)
        self.answers: dict[str, dict] = {}
        self._save()

    def answer(
        self, command: str, stdout: str = "", *, code: int = 0, stderr: str = "", files: dict | None = None
    ) -> None:
        """How to answer `docker <command> ...` (`command`: one or two words, e.g. "image inspect")."""
        self.answers[command] = {"stdout": stdout, "code": code, "stderr": stderr, "files": files or {}}
        self._save()

    def _save(self) -> None:
        (self.folder / "answers.json").write_text(json.dumps(self.answers))

    @property
    def calls(self) -> list[list[str]]:
        log = self.folder / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def called(self, command: str) -> list[list[str]]:
        words = command.split()
        return [call for call in self.calls if call[: len(words)] == words]
