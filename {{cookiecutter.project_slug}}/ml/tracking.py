"""Experiment tracking with MLflow: every `make train` leaves one run, every `make tune` trial a nested one.

Where runs go: MLFLOW_TRACKING_URI when set (a team's tracking server), else an embedded store
under artifacts/mlflow/ (SQLite + an artifact folder, nothing to start; `make ui` browses it).
MLFLOW_TRACKING=off turns tracking off (the benchmark's baseline; quick local runs).

Two promises shape this module:
- Tracking never fails training. A server that cannot be reached costs one warning, and the run
  is written to the local store instead (run.json says which server it was meant for; `sync`,
  i.e. `make track-sync`, copies it there later). MLflow's HTTP retries are capped (see
  `quiet_environment`) so that takes seconds.
- Tracking costs `make train` next to nothing. Importing MLflow and opening a store take seconds
  of CPU, so `make train` starts a logger process (`python -m ml.tracking`) that waits, idle, for
  the finished run and only then imports MLflow: it never competes with the fit for the cores
  (importing during the fit at a lower priority was tried: a niced process on a busy machine gets
  only what the others leave, so whoever waits for its run waits the longer). Training hands it
  the run as one JSON job on stdin and returns without waiting: the logger is detached (its own
  session, output in `tracking.log` beside the model), outlives
  `make train`, and writes run.json when the run is stored. Until then `recording.json` beside the
  model says a recording is pending; every reader of run.json waits for it first (see
  governance/core/recording.py), and the warnings above reach the user there, e.g. at
  `make register` (`make track-wait` waits on its own, as CI does before uploading artifacts).
  MLflow is never imported by the training process itself, nor by app/.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from governance import registry
from governance.core import progress, recording
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import TrackedRun, write_atomically

SWITCH = "MLFLOW_TRACKING"  # on (default) | off
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
# MLflow's own defaults retry an unreachable server for minutes; a training run waits seconds.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "GIT_PYTHON_REFRESH": "quiet"}


def enabled() -> bool:
    """Whether MLFLOW_TRACKING allows tracking (anything but on/off is refused, naming the value)."""
    value = os.environ.get(SWITCH, "on").strip().lower() or "on"
    if value not in ("on", "off"):
        raise InputError(f"environment variable {SWITCH} must be 'on' or 'off' (got {value!r})")
    return value == "on"


LOCAL_STORE = "sqlite:///artifacts/mlflow/mlflow.db"  # how records name the embedded store


def local_uri(paths: Paths) -> str:
    return f"sqlite:///{(paths.tracking / 'mlflow.db').resolve()}"


def local_artifacts(paths: Paths) -> str:
    return (paths.tracking / "artifacts").resolve().as_uri()


def target_uri(paths: Paths) -> str:
    """The team's server when MLFLOW_TRACKING_URI names one, else the embedded store."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").strip() or local_uri(paths)


def experiment_name(model_name: str) -> str:
    return os.environ.get(EXPERIMENT_ENV, "").strip() or model_name


def public(uri: str, local: str = "") -> str:
    """A tracking URI fit for records in git and PR comments: no credentials, no machine paths."""
    if uri == local:
        return LOCAL_STORE
    parts = urlsplit(uri)
    if not parts.hostname or "@" not in parts.netloc:
        return uri
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


warn = recording.warn  # tracking trouble: a warning on stderr, shown even with --quiet


def git_tags(root: Path) -> dict[str, str]:
    """The commit and branch the run came from (CI names the PR's branch in GITHUB_HEAD_REF)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(  # noqa: S603 - fixed git subcommands
                ["git", *args],  # noqa: S607 - git from PATH
                cwd=root,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    branch = (
        os.environ.get("GITHUB_HEAD_REF")
        or os.environ.get("GITHUB_REF_NAME")
        or git("rev-parse", "--abbrev-ref", "HEAD")
    )
    commit = git("rev-parse", "HEAD") or "unknown"
    return {"mlflow.source.git.commit": commit, "git.branch": branch or "unknown"}


# --- the training process's side: no MLflow import here --------------------------------------


@dataclass(frozen=True)
class Job:
    """One finished training run, as the logger process receives it."""

    tracking_uri: str
    local_uri: str
    local_artifacts: str
    experiment: str
    run_name: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[str]
    folder: str = ""  # the model's folder, where the logger writes run.json (empty: stdout only)


_handed_over: list[subprocess.Popen[str]] = []  # detached loggers, referenced until this process ends


class Logger:
    """The logger process, started before training, idle until the run is handed over.

    It runs in its own session with its output in a log file (first in the tracking folder, moved
    beside the model at the hand-over), so it outlives `make train` and holds none of its pipes.
    """

    def __init__(self, log_folder: Path) -> None:
        env = {**os.environ, **QUIET}
        for name, value in HTTP_LIMITS.items():
            env.setdefault(name, value)
        handle, name = tempfile.mkstemp(prefix="logger-", suffix=".log", dir=log_folder)
        self.log = Path(name)
        with os.fdopen(handle, "w") as log:
            self.process: subprocess.Popen[str] | None = subprocess.Popen(
                [sys.executable, "-m", "ml.tracking"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                text=True,
                env=env,
                start_new_session=True,  # Ctrl-C on `make train` after the hand-over spares the recording
            )

    def hand_over(self, job: Job, folder: Path) -> None:
        """Give the logger the run to record beside the model in `folder`, and return at once."""
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(OSError):  # on another file system the log stays where it is
            os.replace(self.log, folder / recording.LOG)
        recording.mark_pending(folder, process.pid)
        try:
            assert process.stdin is not None
            process.stdin.write(json.dumps({**job.__dict__, "folder": str(folder)}))
            process.stdin.close()
        except OSError as error:  # it died before the job came (e.g. MLflow fails to import)
            process.wait()
            recording.clear(folder)
            log = folder / recording.LOG
            warn(f"MLflow tracking failed ({error}; see {log}); the model is trained, not tracked")
            return
        _handed_over.append(process)

    def cancel(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
            self.log.unlink(missing_ok=True)


def start_logger(paths: Paths) -> Logger | None:
    """A logger when tracking is on (MLFLOW_TRACKING), None when it is off."""
    if not enabled():
        return None
    paths.tracking.mkdir(parents=True, exist_ok=True)
    return Logger(paths.tracking)


def wait_all(paths: Paths, timeout_s: float = recording.WAIT_S) -> list[str]:
    """Wait for every model whose run is still being recorded; the versions that have run.json."""
    folders = sorted(marker.parent for marker in paths.models.glob(f"*/{recording.MARKER}"))
    return [folder.name for folder in folders if recording.wait(folder, timeout_s)]


# --- the logger's side: MLflow itself --------------------------------------------------------


def quiet_environment() -> None:
    """Keep MLflow's and its migrations' chatter out of the output; cap its HTTP retries."""
    for name, value in {**QUIET, **HTTP_LIMITS}.items():
        os.environ.setdefault(name, value)
    for name in ("mlflow", "alembic", "urllib3", "git"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    warnings.filterwarnings("ignore", module="pydantic")


_clients: dict[str, Any] = {}


def client(uri: str) -> Any:
    """One MlflowClient per store and process (opening a SQLite store loads its database layer)."""
    from mlflow.tracking import MlflowClient

    if uri not in _clients:
        _clients[uri] = MlflowClient(tracking_uri=uri)
    return _clients[uri]


def experiment_id(mlflow_client: Any, name: str, uri: str, local: str, artifacts: str) -> str:
    """The experiment's id, created on first use; in the embedded store its artifacts go under artifacts/."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = f"{artifacts}/{name}" if uri == local else None
    return mlflow_client.create_experiment(name, artifact_location=location)


def write_run(job: Job, uri: str, parent_run_id: str | None = None) -> tuple[str, str]:
    """One complete run in the store at `uri` (tags, parameters, metrics, files): (run id, experiment id)."""
    from mlflow.entities import Metric, Param

    mlflow_client = client(uri)
    exp = experiment_id(mlflow_client, job.experiment, uri, job.local_uri, job.local_artifacts)
    tags = dict(job.tags)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = mlflow_client.create_run(exp, run_name=job.run_name, tags=tags)
    run_id = run.info.run_id
    stamp = int(time.time() * 1000)
    mlflow_client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), stamp, 0) for key, value in job.metrics.items()],
        params=[Param(key, str(value)) for key, value in job.params.items()],
    )
    for path in job.artifacts:
        if Path(path).is_dir():  # a folder of artifacts (a synced run's model_card/) keeps its name
            mlflow_client.log_artifacts(run_id, path, Path(path).name)
        else:
            mlflow_client.log_artifact(run_id, path)
    mlflow_client.set_terminated(run_id, "FINISHED")
    return run_id, exp


KEPT_SYSTEM_TAGS = ("mlflow.source.git.commit",)


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """A run's own tags and its commit; MLflow's other system tags are set again by the new run."""
    return {
        key: value for key, value in tags.items() if not key.startswith("mlflow.") or key in KEPT_SYSTEM_TAGS
    }


def sync(paths: Paths, say: Any = print) -> list[TrackedRun]:
    """Copy the runs that fell back to the local store to the server now in MLFLOW_TRACKING_URI.

    Each copy carries the run's parameters, metrics, tags and files; run.json then names the
    server's run, tagged with the local run it came from. Runs already on a server stay as they are.
    """
    target = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not target:
        raise InputError("environment variable MLFLOW_TRACKING_URI must name the server to sync to (got '')")
    quiet_environment()
    local = client(local_uri(paths))
    synced = []
    wait_all(paths)
    for record in sorted(paths.models.glob(f"*/{recording.RECORD}")):
        run = TrackedRun.model_validate_json(record.read_text())
        if run.fallback_from is None or run.fallback_from != public(target):
            continue
        kept = local.get_run(run.run_id)
        with tempfile.TemporaryDirectory() as folder:
            files = local.download_artifacts(run.run_id, "", folder)
            job = Job(
                tracking_uri=target,
                local_uri=local_uri(paths),
                local_artifacts=local_artifacts(paths),
                experiment=run.experiment,
                run_name=kept.info.run_name or record.parent.name,
                params=dict(kept.data.params),
                metrics=dict(kept.data.metrics),
                tags={**user_tags(kept.data.tags), "synced_from_local_run": run.run_id},
                artifacts=[str(item) for item in sorted(Path(files).iterdir())],
            )
            run_id, exp = write_run(job, target)
        moved = TrackedRun(
            run_id=run_id, experiment=run.experiment, experiment_id=exp, tracking_uri=public(target)
        )
        write_atomically(record, moved.model_dump_json(indent=2) + "\n")
        entry = registry.load(paths.registry).get(record.parent.name)
        if entry is not None and entry.run is not None and entry.run.run_id == run.run_id:
            registry.update(entry.version, {"run": moved.model_dump(mode="json")}, paths.registry)
        say(f"run {run.run_id} of model {record.parent.name} -> run {run_id} on {moved.tracking_uri}")
        synced.append(moved)
    return synced


def record_run(job: Job) -> dict[str, Any]:
    """Write the run to its store; an unreachable server means the local store and a warning."""
    try:
        run_id, exp = write_run(job, job.tracking_uri)
        uri = public(job.tracking_uri, job.local_uri)
        return {"run_id": run_id, "experiment": job.experiment, "experiment_id": exp, "tracking_uri": uri}
    except Exception as error:  # any failure of the server (down, refused, auth): fall back
        if job.tracking_uri == job.local_uri:
            raise
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        run_id, exp = write_run(job, job.local_uri)
        return {
            "run_id": run_id,
            "experiment": job.experiment,
            "experiment_id": exp,
            "tracking_uri": LOCAL_STORE,
            "fallback_from": public(job.tracking_uri),
            "warning": f"MLflow tracking server {public(job.tracking_uri)} is unreachable ({reason}); "
            f"run {run_id} was written to the local store {job.local_uri} instead, to sync later",
        }


@contextmanager
def reopened(paths: Paths, run: TrackedRun) -> Iterator[Any]:
    """The client of the store that holds `run` (to add files written after training, e.g. the card).

    run.json names the embedded store relative to the project and a server without credentials:
    the embedded one is found under this checkout, a server through MLFLOW_TRACKING_URI's full form.
    """
    quiet_environment()
    configured = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if run.tracking_uri == LOCAL_STORE:
        uri = local_uri(paths)
    elif configured and public(configured) == run.tracking_uri:
        uri = configured
    else:
        uri = run.tracking_uri
    yield client(uri)


def attach(paths: Paths, run: TrackedRun, path: Path, folder: str | None = None) -> bool:
    """Add a file to a finished run (the model card at `make register`); False, warned, if unreachable."""
    if run.tracking_uri == LOCAL_STORE and not (paths.tracking / "mlflow.db").is_file():
        progress.note(f"no local MLflow store here with run {run.run_id}: {path.name} is not added to it")
        return False
    try:
        with reopened(paths, run) as mlflow_client:
            mlflow_client.log_artifact(run.run_id, str(path), folder)
    except Exception as error:  # the store is down or the run is elsewhere: the card is still in git
        warn(f"could not add {path.name} to MLflow run {run.run_id} at {run.tracking_uri}: {error}")
        return False
    return True


def serve_ui(paths: Paths, port: int, say: Any = print) -> int:
    """`mlflow ui` on the embedded store, on loopback only; returns its exit code."""
    paths.tracking.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", local_uri(paths),
        "--default-artifact-root", local_artifacts(paths),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    say(f"MLflow UI on http://127.0.0.1:{port} (store {paths.relative(paths.tracking)}); Ctrl-C stops it")
    try:
        return subprocess.call(command, env={**os.environ, **QUIET})  # noqa: S603 - this interpreter
    except KeyboardInterrupt:
        return 0


def main() -> int:
    """The logger process: wait for the job (training runs meanwhile), then load MLflow and record it.

    With the job's model folder it writes run.json there (or leaves the failure for the reader);
    its answer also goes to stdout, i.e. to its log.
    """
    job = Job(**json.loads(sys.stdin.read()))  # blocks, using no CPU, until training hands over
    quiet_environment()
    folder = Path(job.folder) if job.folder else None
    try:
        answer = record_run(job)
    except Exception as error:
        if folder is not None:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            untracked = f"model {folder.name} is trained, not tracked"
            recording.fail(folder, os.getpid(), f"MLflow tracking failed ({reason}); {untracked}")
        raise
    warning = answer.pop("warning", None)
    if warning:
        warn(warning)
    print(json.dumps(answer), flush=True)
    run = TrackedRun.model_validate(answer)
    if folder is not None and not recording.finish(folder, os.getpid(), run, warning):
        print(f"model {folder.name} was trained again meanwhile: its newer run is the one kept", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
