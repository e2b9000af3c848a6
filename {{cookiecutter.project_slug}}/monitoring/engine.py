"""Where batch work runs: in this process (embedded), on a local Dask cluster, or on a remote one.

One choice for batch scoring and for reading large capture windows, made here and nowhere else:

| setting | engine |
|---|---|
| nothing set (default) | `embedded`: streamed record batches on a thread pool, all cores of this machine |
| `ENGINE=dask-local` | a `distributed.LocalCluster` started for the run: one worker process per core |
| `DASK_SCHEDULER_ADDRESS=tcp://host:8786` | the Dask cluster whose scheduler listens there |

Both paths run the same piece of work (`batch_score.score_piece`, `capture` file readers): Dask
only decides where a piece runs, so the outputs do not depend on the engine. Dask is imported
only when asked for, so the embedded path pays nothing for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from governance.core.errors import InputError

EngineName = Literal["embedded", "dask-local", "dask"]
ENGINES: tuple[EngineName, ...] = ("embedded", "dask-local", "dask")
CONNECT_TIMEOUT_S = 30


class EngineError(InputError):
    """The engine setting breaks a rule; the message names the variable, the rule and the value."""


@dataclass(frozen=True)
class Engine:
    name: EngineName
    address: str | None = None  # the scheduler of `dask`
    workers: int = 0  # `dask-local`: worker processes (0: one per core)

    @property
    def distributed(self) -> bool:
        return self.name != "embedded"

    def describe(self) -> str:
        if self.name == "dask":
            return f"dask cluster at {self.address}"
        if self.name == "dask-local":
            return f"local dask cluster ({self.workers or os.cpu_count()} worker processes)"
        return f"embedded ({os.cpu_count()} threads)"


def choose(name: str | None = None, address: str | None = None) -> Engine:
    """The engine from the arguments, else ENGINE / DASK_SCHEDULER_ADDRESS, else embedded."""
    name = (name or os.environ.get("ENGINE") or "").strip() or None
    address = (address or os.environ.get("DASK_SCHEDULER_ADDRESS") or "").strip() or None
    if name is None:
        name = "dask" if address else "embedded"
    if name not in ENGINES:
        raise EngineError(f"ENGINE: must be one of {', '.join(ENGINES)} (got {name!r})")
    if name == "dask" and not address:
        raise EngineError(
            "DASK_SCHEDULER_ADDRESS: must be set to the scheduler (tcp://host:8786) when ENGINE=dask"
        )
    if address and "://" not in address:
        raise EngineError(
            f"DASK_SCHEDULER_ADDRESS: must be a scheduler URL like tcp://host:8786 (got {address!r})"
        )
    return Engine(name, address if name == "dask" else None)  # type: ignore[arg-type]


@contextmanager
def connect(engine: Engine, preload: tuple[str, ...] = ()) -> Iterator[Any]:
    """A `distributed.Client` for a Dask engine (closed afterwards), None for the embedded one.

    A local cluster gets one single-threaded worker process per core: onnxruntime and pyarrow
    release the GIL, but one process per core keeps pieces from contending inside one worker.
    Its workers import the `preload` modules as they start (a few seconds on a busy machine),
    so the cluster's start holds those imports and the run's time holds the work alone.
    """
    if not engine.distributed:
        yield None
        return
    from distributed import Client, LocalCluster

    if engine.name == "dask-local":
        workers = engine.workers or os.cpu_count() or 1
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                preload=list(preload),
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(engine.address, timeout=CONNECT_TIMEOUT_S)
    except OSError as error:
        raise EngineError(
            f"DASK_SCHEDULER_ADDRESS: no Dask scheduler answered at {engine.address} ({error})"
        ) from None
    try:
        yield client
    finally:
        client.close()
