"""What several benchmarks need alike: a project in its steady state, and a process tree measured.

The benchmark scripts run by path (`python bench/<name>/run.py`, and their `measure.py` with a
generated project's interpreter), so they import this file by putting bench/ on sys.path.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def byte_compile(project: Path) -> None:
    """Measure the steady state a user's machine is in: modules byte-compiled, as pip leaves them at
    install and Python caches them at first import. Where PYTHONDONTWRITEBYTECODE is set (this
    machine sets it) every run would otherwise compile its imports from source: the 1 M-row drift
    check took 26 s instead of 14.7 s that way (2026-12-02), MLflow's import twice its CPU."""
    python = str(project / ".venv" / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"==> byte-compiling {project.name} and its environment once", flush=True)
    # Some packages ship files for other Python versions that do not compile: the exit code is ignored.
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", site], check=False, capture_output=True)
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "-x", r"/\.venv/", str(project)],
        check=False, capture_output=True,
    )  # fmt: skip


def measured_tree(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `command`: its exit code, wall seconds, CPU seconds (it and the children it waited for)
    and the peak of the summed resident memory of it and all its children, sampled every 0.1 s.

    Why sampled, not the kernel's ru_maxrss: Linux keeps a process's peak across fork and exec,
    so a check started by a benchmark that had just generated gigabytes of data reported the
    benchmark's peak, not its own (5.9 GB for a 1 GB check, 2026-12-02). Summed, because a run's
    helper processes (Dask workers, the drift check's snapshot worker) are part of what it holds.
    """
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    watched = psutil.Process(process.pid)
    peak = 0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            members = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(member.memory_info().rss for member in members if member.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": process.returncode,
        "wall_s": time.perf_counter() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": peak / 2**20,
    }
