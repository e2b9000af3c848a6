"""Local stand-ins for the two services a real project reaches over the network.

- **GitHub's REST API**: the generated project's own test double (`tests/support/github_standin.py`,
  `python -m tests.support.github_standin`), served on a loopback port. Its git side is the demo's
  local bare repository (`origin`): the retraining bot pushes its branch there, and the
  stand-in accepts pull requests for branches found in it. It keeps its state in memory
  and mirrors it to a JSON file after every request, which the demo reads back.
- **A container registry** for `cd.yml`'s push: Debian's `docker-registry` (the CNCF
  distribution registry) on a loopback port, storing into the demo folder.

Both are started fresh by each demo run and stopped at its end, so a second run never
meets a pull request or an image of the first. They are stand-ins, never GitHub or a real
registry: the demo names them that way in every message.
"""

# Fixed programs (the project's Python, the registry, apt-get) with argument lists, never a shell.

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "demo-stand-in-token"


class StandInError(RuntimeError):
    """A stand-in could not start or answered something unexpected."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:  # not listening (yet), reset, timeout
        return 0, str(error)


def stop_process(process: subprocess.Popen | None, seconds: float = 10) -> None:
    """SIGTERM to the process group the demo started, then SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class GitHubStandIn:
    """`python -m tests.support.github_standin` of the generated project, for one repository."""

    def __init__(self, project: Path, repository: str, origin: Path, folder: Path) -> None:
        self.project, self.repository, self.origin = project, repository, origin
        self.folder = folder
        self.state_path = folder / "state.json"
        self.log_path = folder / "stand-in.log"
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        python = self.project / ".venv" / "bin" / "python"
        command = [
            str(python), "-m", "tests.support.github_standin", "--repository", self.repository,
            "--state", str(self.state_path), "--git-dir", str(self.origin),
        ]  # fmt: skip
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=self.project, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        line = self.process.stdout.readline().strip() if self.process.stdout else ""
        if not line.startswith("http://"):
            self.stop()
            raise StandInError(f"the GitHub API stand-in did not start (log: {self.log_path}): {line!r}")
        self.url = line
        while time.monotonic() < deadline:
            status, _ = self.get("")
            if status == 200:
                return self.url
            time.sleep(0.2)
        self.stop()
        raise StandInError(f"the GitHub API stand-in at {self.url} does not answer")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def env(self) -> dict[str, str]:
        """What GitHub Actions would provide: API address, repository, token."""
        return {"GITHUB_API_URL": self.url, "GITHUB_REPOSITORY": self.repository, "GITHUB_TOKEN": TOKEN}

    def get(self, path: str) -> tuple[int, Any]:
        return _request(
            "GET", f"{self.url}/repos/{self.repository}{path}", headers={"authorization": f"token {TOKEN}"}
        )

    def pulls(self, state: str = "all") -> list[dict[str, Any]]:
        status, answer = self.get(f"/pulls?state={state}")
        if status != 200:
            raise StandInError(f"GitHub API stand-in: listing pull requests answered {status}: {answer}")
        return answer

    def comments(self, number: int) -> list[dict[str, Any]]:
        status, answer = self.get(f"/issues/{number}/comments")
        if status != 200:
            raise StandInError(f"GitHub API stand-in: comments of #{number} answered {status}: {answer}")
        return answer

    def file(self, branch: str, path: str) -> str | None:
        import base64

        status, answer = self.get(f"/contents/{path}?ref={branch}")
        if status != 200:
            return None
        return base64.b64decode(answer["content"]).decode()

    def close(self, number: int) -> None:
        """What merging does to a pull request on GitHub, as far as the stand-in models it."""
        status, answer = _request(
            "PATCH",
            f"{self.url}/repos/{self.repository}/pulls/{number}",
            {"state": "closed"},
            headers={"authorization": f"token {TOKEN}"},
        )
        if status != 200:
            raise StandInError(f"GitHub API stand-in: closing #{number} answered {status}: {answer}")


class RegistryStandIn:
    """A container registry on a loopback port, storing under folder.

    Debian's `docker-registry` (installed when missing, as root with apt) or the CNCF
    `registry` binary; on a Docker engine without either, the `registry:2` image.
    """

    BINARIES = ("docker-registry", "registry")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen | None = None
        self.container = ""  # when it runs as the registry image on Docker
        self.env: dict[str, str] = {}
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def binary(cls) -> str | None:
        return next((found for name in cls.BINARIES if (found := shutil.which(name))), None)

    @classmethod
    def install(cls, log) -> str | None:
        """Debian's package, when this machine can install it (root + apt); else None."""
        if cls.binary() or os.geteuid() != 0 or shutil.which("apt-get") is None:
            return cls.binary()
        log("installing Debian's docker-registry package for the registry stand-in")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-registry"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            # The package lists may be missing or stale on a fresh machine: refresh once, retry.
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        return cls.binary()

    def start(self, log, engine_kind: str, env: dict[str, str], timeout: float = 60) -> str:
        """Serve on a free loopback port: the registry binary, else (Docker only) the registry image."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        binary = self.install(log)
        if binary is not None:
            config = self.folder / "config.yml"
            config.write_text(
                "version: 0.1\nlog:\n  level: warn\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.folder / 'data'}\n"
                f"http:\n  addr: {self.host}\n"
            )
            log_file = (self.folder / "registry.log").open("w")
            self.process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        elif engine_kind == "docker":
            # A Docker engine can pull the registry's own image (laptops, GitHub runners).
            self.container, self.env = f"demo-registry-{self.port}", env
            started = subprocess.run(
                ["docker", "run", "--detach", "--rm", "--name", self.container,
                 "--publish", f"{self.host}:5000", "registry:2"],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if started.returncode != 0:
                raise StandInError(
                    f"the registry stand-in (registry:2) did not start: {started.stderr.strip()}"
                )
        else:
            raise StandInError(
                "no container registry stand-in: install Debian's `docker-registry` package (or put the "
                "CNCF distribution `registry` binary on PATH) so the image can be pushed locally"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            status, _ = _request("GET", f"http://{self.host}/v2/")
            if status == 200:
                return self.host
            time.sleep(0.2)
        self.stop()
        raise StandInError(f"the registry stand-in did not answer on {self.host} (log: {self.folder})")

    def has_manifest(self, repository: str, digest: str) -> bool:
        accept = ", ".join(
            (
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
            )
        )
        status, _ = _request(
            "GET", f"http://{self.host}/v2/{repository}/manifests/{digest}", headers={"accept": accept}
        )
        return status == 200

    def podman_env(self) -> dict[str, str]:
        """podman refuses plain-HTTP registries unless told: a registries.conf just for the demo.

        Passed through CONTAINERS_REGISTRIES_CONF (and the login file through
        REGISTRY_AUTH_FILE), so nothing on the machine is reconfigured. The push goes through
        the podman CLI (DOCKER=podman), which reads them; podman's API service, which the
        docker CLI talks to, only reads the machine's registries.conf when it starts.
        """
        conf = self.folder / "registries.conf"
        conf.write_text(
            "# Written by make demo: its local registry stand-in speaks plain HTTP on loopback.\n"
            f'[[registry]]\nlocation = "{self.host}"\ninsecure = true\n'
        )
        auth = self.folder / "auth.json"
        if not auth.exists():
            auth.write_text('{"auths": {}}\n')
        return {
            "CONTAINERS_REGISTRIES_CONF": str(conf),
            "REGISTRY_AUTH_FILE": str(auth),
            # podman's own CLI builds OCI images, which drop HEALTHCHECK; Docker's format keeps it.
            "BUILDAH_FORMAT": "docker",
        }

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        if self.container:
            subprocess.run(["docker", "rm", "--force", self.container], env=self.env, capture_output=True)
            self.container = ""
