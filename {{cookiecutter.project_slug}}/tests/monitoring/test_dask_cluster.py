"""On a real Dask cluster (a `dask scheduler` and two `dask worker` processes on this machine),
batch scoring and the capture reader give exactly what the embedded path gives.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from governance.cli import main
from governance.core.contract import load as load_contract
from monitoring import batch_score, engine, reference
from monitoring.capture import read_window
from tests.support.drift import example, fake_scores, write_capture
from tests.support.training import example_frame

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 120


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The scheduler's address, once both workers have joined; every process is stopped afterwards."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    common = ["--no-dashboard"]
    processes = [
        subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file",
             str(scheduler_file), *common],
            stdout=(folder / "scheduler.log").open("w"), stderr=subprocess.STDOUT,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()
            assert processes[0].poll() is None, (folder / "scheduler.log").read_text()
            time.sleep(0.2)
        for number in range(2):
            processes.append(
                subprocess.Popen(
                    [str(BIN / "dask"), "worker", "--scheduler-file", str(scheduler_file), "--host",
                     "127.0.0.1", "--nthreads", "1", "--nworkers", "1", *common],
                    stdout=(folder / f"worker-{number}.log").open("w"), stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield address
    finally:
        _stop(processes)


def test_scoring_on_the_cluster_writes_what_the_embedded_path_writes(registered_workspace, cluster, tmp_path):
    paths, _ = registered_workspace
    contract = load_contract(paths.contract)
    frame = example_frame(3_000, seed=11)[contract.feature_names].copy()
    frame[contract.numeric[0].name] = frame[contract.numeric[0].name].astype("float64")
    frame.loc[::97, contract.numeric[0].name] = -1.0  # rejects too
    frame.to_parquet(tmp_path / "input.parquet", row_group_size=500)
    embedded = batch_score.run(paths, str(tmp_path / "input.parquet"), str(tmp_path / "embedded"))
    remote = batch_score.run(
        paths, str(tmp_path / "input.parquet"), str(tmp_path / "dask"), engine.choose("dask", cluster)
    )
    assert (remote.pieces, remote.scored, remote.rejected) == (embedded.pieces, embedded.scored, 31)
    assert remote.engine == f"dask cluster at {cluster}"
    for kind in ("predictions", "rejects"):
        names = sorted(path.name for path in (tmp_path / "embedded" / kind).iterdir())
        assert names == sorted(path.name for path in (tmp_path / "dask" / kind).iterdir())
        for name in names:
            pd.testing.assert_frame_equal(
                pd.read_parquet(tmp_path / "embedded" / kind / name),
                pd.read_parquet(tmp_path / "dask" / kind / name),
            )
    from distributed import Client

    with Client(cluster) as client:
        loads = client.run(lambda: batch_score._LOADS)
    assert sorted(loads.values()) == [1, 1]  # six pieces, two workers, each loaded the model once


def test_the_capture_window_read_on_the_cluster_is_the_embedded_one(cluster, example_contract, tmp_path):
    frame = example(600, seed=5)
    write_capture(
        tmp_path, frame, example_contract, fake_scores(frame, example_contract), step=timedelta(hours=2)
    )
    here = read_window(str(tmp_path), contract=example_contract)
    with engine.connect(engine.choose("dask", cluster)) as client:
        there = read_window(str(tmp_path), contract=example_contract, client=client)
    assert len(here) == 600
    pd.testing.assert_frame_equal(here, there)


def test_the_drift_check_on_the_cluster_decides_what_the_embedded_one_decides(
    registered_workspace, cluster, monkeypatch, capsys
):
    paths, _ = registered_workspace
    contract = load_contract(paths.contract)
    frame = example(800, seed=9)
    frame["income"] = frame["income"] * 1.8  # drifted, so the decision has something to say
    champion, _ = reference.champion(paths)  # its model scores the rows, as serving would
    scores = reference.model_scores(reference.model_path(paths, champion), frame, contract)
    capture = paths.root / "captures" / "dask"
    write_capture(capture, frame, contract, scores, model_version=champion.version, step=timedelta(minutes=5))
    command = ["--root", str(paths.root), "drift", "--capture-uri", str(capture), "--detector", "scipy",
               "--since", "2000-01-01T00:00:00+00:00", "--no-history"]  # fmt: skip
    summaries = []
    for address in (None, cluster):
        if address:
            monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        assert main(command) == 0, capsys.readouterr().err
        summaries.append(json.loads((paths.drift_reports / "drift.json").read_text()))
    here, there = summaries
    assert there["window"]["rows"] == here["window"]["rows"] == 800
    assert there["drift"] == here["drift"] and there["score_drift"] == here["score_drift"]
    assert here["drift"]["drifted_features"]  # a window with something to decide on
    assert there["decision"]["status"] == here["decision"]["status"]
    assert there["decision"]["reasons"] == here["decision"]["reasons"]
