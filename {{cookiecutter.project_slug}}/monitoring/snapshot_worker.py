"""The retraining snapshot is built in a process of its own, started when the drift check starts.

Why: a snapshot made from the window is validated by Great Expectations and split like training
splits it (scikit-learn); importing those two alone takes seconds, and validating 50,000 rows
takes seconds more, while the check itself reads, tests and draws mostly on one core. So the
check starts this worker first, and it works on the other core in three steps:
1. while the check reads the window: import them;
2. as soon as the window is read (before any test): validate the candidate rows the check hands
   over (an Arrow file), writing the validation's reports into a scratch folder only;
3. once the check has decided: on "retrain", move those reports into reports/ and write the
   snapshot (while the check draws its plots); on anything else the worker is killed, and the
   scratch folder goes with it, so a run that does not retrain leaves no trace of the candidate.
What it builds is exactly what `dataset.build` builds in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from governance.core import progress
from governance.core.errors import ProjectError
from governance.core.paths import Paths
from governance.core.records import NewDataset

if TYPE_CHECKING:  # imported where used: the check starts this worker before its own imports
    import pandas as pd

CODE_ROOT = Path(__file__).resolve().parents[1]  # where `monitoring` is importable from
COMMIT = "commit"


class WorkerFailed(ProjectError):
    """The worker ended without an answer (e.g. ml/params.yaml breaks a rule there); the message
    quotes the end of its output, and the command line shows it as one error line."""


class SnapshotWorker:
    """One worker process: `submit` one job, `commit` it, then `result`; `close` ends an unused one."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="snapshot-worker-"))
        self.log = self.folder / "worker.log"
        search = [str(CODE_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, search))}
        command = [sys.executable, "-m", "monitoring.snapshot_worker"]
        with self.log.open("w") as log:
            self.process: subprocess.Popen[str] | None = subprocess.Popen(  # noqa: S603 - this interpreter, our module
                command,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=CODE_ROOT,
                env=env,
            )

    def submit(self, batch: pd.DataFrame, reference: pd.DataFrame, job: dict[str, Any]) -> None:
        """Hand over the candidate rows (validated at once), the reference rows and what else
        `dataset.build` takes; nothing is written outside the scratch folder until `commit`."""
        assert self.process is not None and self.process.stdin is not None, "submit once, on a running worker"
        files = {
            "batch": self.folder / "batch.arrow",
            "reference": self.folder / "reference.arrow",
            "scratch": self.folder / "reports",
            "answer": self.folder / "answer.json",
        }
        batch.to_feather(files["batch"])
        reference.reset_index(drop=True).to_feather(files["reference"])
        self._send(json.dumps({**job, **{name: str(path) for name, path in files.items()}}) + "\n")

    def commit(self) -> None:
        """The check says retrain: keep the validation's reports and write the snapshot."""
        self._send(COMMIT + "\n", last=True)

    def _send(self, text: str, last: bool = False) -> None:
        assert self.process is not None and self.process.stdin is not None, "no worker"
        try:
            self.process.stdin.write(text)
            self.process.stdin.flush()
            if last:
                self.process.stdin.close()
        except OSError:  # it died before the message came: `result` says why
            pass

    def result(self) -> NewDataset:
        """Wait for the worker's answer (the snapshot, or why the rows are not valid)."""
        assert self.process is not None, "no worker"
        code = self.process.wait()
        self.process = None
        answer = self.folder / "answer.json"
        if code != 0 or not answer.is_file():
            lines = self.log.read_text(errors="replace").strip().splitlines()
            raise WorkerFailed(
                f"the snapshot worker failed (exit code {code}): {lines[-1] if lines else 'no output'}"
            )
        sys.stderr.write(self.log.read_text(errors="replace"))  # whatever the libraries warned about
        return NewDataset.model_validate_json(answer.read_text())

    def close(self) -> None:
        """End the worker if it is still there (no job given, or the check failed), remove its files;
        a second call does nothing.

        Killed, not asked: one that is still importing would otherwise finish its imports first.
        """
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SnapshotWorker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def main() -> int:
    """The worker: import, validate the candidate, and on "commit" keep the reports and snapshot it."""
    import pandas as pd

    from data_pipelines import validation
    from governance.core.contract import load as load_contract
    from ml.train import load_params
    from monitoring import dataset

    validation.import_gx()
    progress.use(progress.Quiet())  # the check announces the step and its duration
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # stdin closed without a job
    job = json.loads(line)
    paths = Paths(Path(job["root"]))
    contract = load_contract(paths.contract)
    scratch = Path(job["scratch"])
    rows = dataset.Candidate(pd.read_feather(job["batch"]), job["labelled"], tuple(job["notes"]))
    checked = dataset.validate_candidate(rows, contract, job["source"], scratch, job["min_rows"])
    if sys.stdin.readline().strip() != COMMIT:
        return 0  # the check did not ask for the snapshot
    checked = moved(checked, scratch, paths.reports)
    if checked.valid:
        sources = dataset.Sources(
            choice=job["choice"],
            reference=pd.read_feather(job["reference"]),
            reference_id=job["reference_id"],
            params=load_params(paths.params),
            sliding_snapshots=job["sliding_snapshots"],
            manifest=job["manifest"],
        )
        checked = dataset.snapshot_candidate(rows, checked, contract, job["source"], paths.snapshots, sources)
    Path(job["answer"]).write_text(checked.model_dump_json())
    return 0


def moved(checked: NewDataset, scratch: Path, reports: Path) -> NewDataset:
    """The validation's reports (its JSON result, its Data Docs) moved from scratch into `reports`."""
    if scratch.is_dir():
        shutil.copytree(scratch, reports, dirs_exist_ok=True)

    def relocated(path: str | None) -> str | None:
        return str(reports / Path(path).relative_to(scratch)) if path else None

    return checked.model_copy(
        update={"validation": relocated(checked.validation), "data_docs": relocated(checked.data_docs)}
    )


if __name__ == "__main__":
    sys.exit(main())
