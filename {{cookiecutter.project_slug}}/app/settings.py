"""Runtime settings of the service, read from environment variables and checked at start.

Why a settings class: a wrong value (a typo in UNKNOWN_CATEGORY, a capture store switched
off in production) must stop the process before it takes traffic, with a message naming
the variable, instead of surfacing later as odd behaviour. Serving limits that are
requirements (batch size, what to do with an unseen category) default to
`governance/policy.yaml`, so the policy stays the one place where they are decided; an
environment variable still overrides them for one deployment.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import fsspec
from pydantic import ByteSize, Field, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.feedback import MIN_API_KEY_CHARS, MIN_KEY_CHARS, KeyFileError, read_keys
from governance.core import policy as policy_file
from governance.core.paths import DEFAULT_CAPTURE_URI, PATHS

CGROUP_ROOT = Path("/sys/fs/cgroup")
DISABLED_CAPTURE = ("", "none", "off", "disabled")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_v2_quota(root: Path) -> float | None:
    """Cores allowed by cgroup v2 `cpu.max` ("<quota> <period>" or "max <period>")."""
    candidates = [root / "cpu.max"]
    membership = _read(Path("/proc/self/cgroup")) if root == CGROUP_ROOT else None
    for line in (membership or "").splitlines():
        if line.startswith("0::/") and line != "0::/":
            candidates.insert(0, root / line[4:] / "cpu.max")
    for candidate in candidates:
        text = _read(candidate)
        if not text:
            continue
        quota, _, period = text.partition(" ")
        if quota == "max":
            return None
        try:
            return int(quota) / int(period or 100000)
        except ValueError:
            return None
    return None


def _cgroup_v1_quota(root: Path) -> float | None:
    """Cores allowed by cgroup v1 CFS bandwidth (`cpu.cfs_quota_us` / `cpu.cfs_period_us`)."""
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota, period = _read(root / folder / "cpu.cfs_quota_us"), _read(root / folder / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            quota_us, period_us = int(quota), int(period)
        except ValueError:
            return None
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def cpu_limit(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores this process may really use: the container's CPU quota, else its CPU affinity.

    `os.cpu_count()` reports the host's cores; a pod limited to 2 CPUs on a 64-core node
    that sizes its thread pools by it thrashes. The quota is rounded up (0.5 CPU -> 1 thread).
    """
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_v2_quota(cgroup_root)
    if quota is None:
        quota = _cgroup_v1_quota(cgroup_root)
    if quota is None:
        return max(1, available)
    return max(1, min(available, math.ceil(quota)))


class PolicyDefaults(PydanticBaseSettingsSource):
    """Defaults taken from `governance/policy.yaml` (`serving:`), below environment variables.

    The file is optional at run time (a slim image may not ship it); then the built-in
    defaults below apply. The path itself comes from POLICY_PATH.
    """

    KEYS = ("max_batch_rows", "unknown_category")

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get("POLICY_PATH") or PATHS.policy)
        if not path.is_file():
            return {}
        serving = policy_file.load(path).serving
        return {key: getattr(serving, key) for key in self.KEYS}


class Settings(BaseSettings):
    """Every knob of the service; the environment variable is the field name in upper case."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", protected_namespaces=())

    app_env: Literal["development", "production"] = "production"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    grpc_port: int | None = Field(
        8081, ge=1, le=65535, description="the Open Inference Protocol over gRPC; empty: no gRPC server"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    model_path: Path = Path("artifacts/models/latest")
    model_name: str = Field("", description="served name; empty: the model's own metadata")
    contract_path: Path = PATHS.contract

    shadow_model_path: Path | None = Field(
        None,
        description="a challenger model (like MODEL_PATH) scored beside the served one, off the "
        "response path, its answers captured; empty: no shadow scoring",
    )
    shadow_queue_size: int = Field(
        128, ge=1, le=100_000, description="requests waiting for the challenger; more are dropped and counted"
    )
    shadow_drain_seconds: float = Field(
        5.0,
        gt=0,
        le=600,
        description="at shutdown, time for the queued shadow requests before they are dropped",
    )

    max_batch_rows: int = Field(1000, ge=1, le=100_000)
    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="the cap of the body limit, which is otherwise sized from MAX_BATCH_ROWS",
    )
    max_concurrent_requests: int = Field(
        32,
        ge=1,
        le=10_000,
        description="POST requests read or scored at once; more are answered 503 with Retry-After",
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="a request body must arrive within this time, else 408"
    )
    unknown_category: Literal["reject", "score"] = "reject"
    inline_body_bytes: int = Field(
        16 * 1024,
        ge=0,
        description="bodies up to this size are scored on the event loop, larger ones in threads",
    )

    ort_intra_op_threads: int = Field(0, ge=0, le=256, description="0: the container's CPU limit")

    capture_uri: str = DEFAULT_CAPTURE_URI
    capture_flush_rows: int = Field(1000, ge=1, le=1_000_000)
    capture_flush_seconds: float = Field(1.0, gt=0, le=3600)
    capture_max_buffer_rows: int = Field(200_000, ge=1)
    # A local capture folder (development, staging) is bounded: files rotate at this size, and
    # the oldest go beyond the retention size or age. The defaults fit deploy/base's 1Gi volume:
    # at most 768 MiB retained + one 64 MiB file, and unready below 128 MiB free.
    capture_max_file_bytes: ByteSize = Field(ByteSize(64 * 1024**2), ge=4096)
    capture_retention_bytes: ByteSize = Field(ByteSize(768 * 1024**2), ge=4096)
    capture_retention_days: float = Field(30, ge=0, description="0: no age limit")
    capture_min_free_bytes: ByteSize = Field(ByteSize(128 * 1024**2), ge=0)

    graceful_shutdown_seconds: float = Field(20.0, gt=0, le=600)

    feedback_key_file: Path | None = Field(
        None, description="HMAC key(s) of the feedback tokens, one per line (a mounted secret)"
    )
    feedback_api_keys_file: Path | None = Field(
        None, description="when set, POST /feedback needs `Authorization: Bearer <one of these keys>`"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, PolicyDefaults(settings_cls)

    @field_validator("log_level", "app_env", "unknown_category", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        """LOG_LEVEL=INFO and LOG_LEVEL=info mean the same; so do the other word choices."""
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("capture_uri")
    @classmethod
    def _reachable_store_type(cls, value: str) -> str:
        """An object-store URL needs its fsspec backend installed (s3fs, gcsfs, adlfs): say so at start."""
        if value.strip().lower() in DISABLED_CAPTURE:
            return value
        try:
            fsspec.core.url_to_fs(value)
        except (ImportError, ValueError) as error:
            raise ValueError(f"CAPTURE_URI {value!r} cannot be opened: {error}") from None
        return value

    @field_validator("grpc_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: Any) -> Any:
        """GRPC_PORT= (empty) turns the gRPC server off; so do "off" and "none"."""
        return None if isinstance(value, str) and value.strip().lower() in ("", "off", "none") else value

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        if self.grpc_port == self.port:
            raise ValueError(f"GRPC_PORT={self.grpc_port} is PORT too: the two servers need a port each")
        return self

    @field_validator("feedback_key_file", "feedback_api_keys_file", "shadow_model_path", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("feedback_key_file", "feedback_api_keys_file")
    @classmethod
    def _readable_keys(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """A secret that is missing, empty or too short stops the process at start, naming the file."""
        if value is not None:
            minimum = MIN_KEY_CHARS if info.field_name == "feedback_key_file" else MIN_API_KEY_CHARS
            try:
                read_keys(value, minimum)
            except KeyFileError as error:
                raise ValueError(str(error)) from None
        return value

    @property
    def capture_enabled(self) -> bool:
        return self.capture_uri.strip().lower() not in DISABLED_CAPTURE

    @property
    def intra_op_threads(self) -> int:
        return self.ort_intra_op_threads or cpu_limit()

    @model_validator(mode="after")
    def _refuse_unsafe_outside_development(self) -> Settings:
        if self.app_env == "development":
            return self
        problems = []
        if not self.capture_enabled:
            problems.append(
                f"CAPTURE_URI={self.capture_uri!r} switches capture off, which monitoring and "
                "retraining depend on"
            )
        if self.capture_flush_seconds > 60:
            problems.append(
                f"CAPTURE_FLUSH_SECONDS={self.capture_flush_seconds} would lose up to that many seconds "
                "of predictions on a crash (at most 60)"
            )
        if self.feedback_key_file is None:
            problems.append(
                "FEEDBACK_KEY_FILE is not set: feedback tokens need a key that every replica shares, "
                "a mounted secret (app/README.md, deploy/README.md)"
            )
        if self.capture_flush_rows > self.capture_max_buffer_rows:
            problems.append(
                f"CAPTURE_FLUSH_ROWS={self.capture_flush_rows} exceeds "
                f"CAPTURE_MAX_BUFFER_ROWS={self.capture_max_buffer_rows}"
            )
        if self.capture_max_file_bytes > self.capture_retention_bytes:
            problems.append(
                f"CAPTURE_MAX_FILE_BYTES={self.capture_max_file_bytes} exceeds "
                f"CAPTURE_RETENTION_BYTES={self.capture_retention_bytes}: retention could not keep one file"
            )
        if problems:
            raise ValueError(
                "unsafe settings for APP_ENV=production (set APP_ENV=development to allow them): "
                + "; ".join(problems)
            )
        return self
