"""Where everything lives, decided in one place.

The project root is PROJECT_ROOT when set, else the folder this package is installed from
(the checkout, editable; `/app` in the serving image). Every file a command reads or writes is
a property of `Paths`, so tests and tools point a whole run at another folder by building
`Paths(other_root)`, and no module computes a path of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CAPTURE_URI = "artifacts/capture"  # relative to the working folder, like every default


def project_root() -> Path:
    configured = os.environ.get("PROJECT_ROOT", "").strip()
    return Path(configured).resolve() if configured else Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Paths:
    root: Path

    # -- configuration people edit (in git) -------------------------------------------------
    @property
    def contract(self) -> Path:
        return self.root / "data_pipelines" / "contract.yaml"

    @property
    def source(self) -> Path:
        return self.root / "data_pipelines" / "source.yaml"

    @property
    def params(self) -> Path:
        return self.root / "ml" / "params.yaml"

    @property
    def monitoring(self) -> Path:
        return self.root / "monitoring" / "monitoring.yaml"

    @property
    def policy(self) -> Path:
        return self.root / "governance" / "policy.yaml"

    @property
    def registry(self) -> Path:
        return self.root / "governance" / "registry.yaml"

    @property
    def cards(self) -> Path:
        return self.root / "governance" / "model_cards"

    @property
    def history(self) -> Path:
        return self.root / "governance" / "monitoring_history.jsonl"

    @property
    def retraining(self) -> Path:
        """A committed retraining request (written by `make retrain-pr`, read by `make data`)."""
        return self.root / "governance" / "retraining"

    @property
    def templates(self) -> Path:
        return self.root / "governance" / "templates"

    @property
    def overlays(self) -> Path:
        return self.root / "deploy" / "overlays"

    # -- what the pipeline produces (git-ignored) -------------------------------------------
    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def snapshots(self) -> Path:
        return self.artifacts / "snapshots"

    @property
    def models(self) -> Path:
        return self.artifacts / "models"

    @property
    def image_record(self) -> Path:
        return self.artifacts / "image.json"

    @property
    def batch_image_record(self) -> Path:  # `make image-push-batch`: the batch image's digest
        return self.artifacts / "image-batch.json"

    @property
    def batch_deploy(self) -> Path:  # the nightly scoring job and its Dask cluster
        return self.root / "deploy" / "batch"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def drift_reports(self) -> Path:
        return self.reports / "drift"

    # -- experiment tracking and tuning (`make train`, `make tune`, `make ui`) -------------------
    @property
    def search_space(self) -> Path:
        return self.root / "ml" / "search_space.yaml"

    @property
    def tracking(self) -> Path:
        """The embedded MLflow store (SQLite + artifact folder) and the Optuna study beside it."""
        return self.artifacts / "mlflow"

    @property
    def tuning_reports(self) -> Path:
        return self.reports / "tuning"

    def relative(self, path: Path | str) -> str:
        """Paths recorded in git are relative to the project, so they survive a fresh clone."""
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(Path(path).resolve())


PATHS = Paths(project_root())
