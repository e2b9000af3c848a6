"""`make demo`: scaffold the defaults into build/demo/ and run the model's whole lifecycle.

design -> data -> validation -> training with gates (an MLflow run) -> registry -> tuning
(Optuna) -> image -> deployment (push, staging, production) -> serving -> production-like
traffic, drifted traffic and late labels -> drift check -> decision -> retraining pull request
-> CI on that pull request (act) -> merge -> CD (act) -> GitOps pull request pinning the new
image digest for staging -> the staged model in shadow beside the champion -> comparison ->
promotion pull request with the comparison -> a shuffled-label candidate rejected in shadow,
forced into production anyway -> post-deploy check -> rollback pull request
(scripts/demo_release.py).

Each step is a make target (or workflow) of the generated project, the same ones people, CI
and act call; this script only strings them together, times them and checks what each left
behind. GitHub's REST API and the container registry are local stand-ins
(scripts/demo_standins.py), named as such everywhere; the project is baked with the
registry stand-in as its container registry. The run stops at the first failing step and
says which and why; a capability that is missing is a failure, never a skip (without any
container engine the image steps say SKIPPED and CI's image job then fails).
Every run starts from a fresh bake, a fresh `origin` and fresh stand-ins, so running it
twice gives the same result and never a second pull request; `--until STEP` runs a prefix.
"""

# Commands are argument lists of fixed programs (make, git, docker, the project's Python), never
# a shell; /tmp is the container's own tmpfs.

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_engine
import demo_release
from demo_report import DemoError, Evidence, Step, index_page, table
from demo_standins import GitHubStandIn, RegistryStandIn, StandInError, free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "demo"
# Variables of the caller that would steer the project's make targets somewhere else
# (a real GitHub token above all); the demo sets what it needs explicitly.
DROPPED_ENV = (
    "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV", "CAPTURE_URI", "PORT", "HOST",
    "MODEL_PATH", "IMAGE", "TAG", "SNAPSHOT", "DATA", "DOCKER", "PYTEST_ADDOPTS", "APP_ENV",
)  # fmt: skip
CONTAINER_UID = "10001:10001"  # the image's non-root user (deploy/Dockerfile, Kubernetes manifests)
# (phase, rows, seed, covariate drift, concept drift): production-like first, then a downturn
# that moves the inputs and how default depends on them, so that retraining pays off.
TRAFFIC = (
    ("production-like", 1000, 101, 0.0, 0.0),
    ("drifted", 4000, 202, 0.8, 0.5),
)
FEEDBACK_SHARE = 0.8  # outcomes known for most scored loans by the time the check runs
TUNING_TRIALS = 4  # enough for a Pareto front; `make tune` defaults to 20
JOB_END = re.compile(
    r"^\[(?P<workflow>[^/\]]+)/(?P<job>[^\]]+?)\s*\]\s+🏁\s+Job (?P<outcome>succeeded|failed)", re.M
)
PR_MARKER = "<!-- mlops-pr-report -->"


@dataclass
class Demo:
    build: Path
    env: dict[str, str] = field(default_factory=dict)
    # pytest's options for the project's unit tests: the `test` step's (default: the fast set), and
    # when set, also the `ci` step's lint + unit tests job (which otherwise runs all, as CI does).
    unit_tests: str = ""
    project: Path = Path()
    origin: Path = Path()
    repository: str = ""
    engine: demo_engine.Engine | None = None
    github: GitHubStandIn | None = None
    registry: RegistryStandIn | None = None
    registry_env: dict[str, str] = field(default_factory=dict)
    champion_digest: str = ""
    pushed_repository: str = ""  # the image's repository in the registry stand-in (make image-push)
    stale_registry: str = ""  # the previous run's registry stand-in, whose image tags are removed
    server: subprocess.Popen | None = None
    container: str = ""
    port: int = 0
    image: str = ""
    evidence: Evidence = field(default_factory=Evidence)
    traffic: dict[str, dict] = field(default_factory=dict)
    pull: int = 0
    challenger: str = ""  # the staged retrained version, scored in shadow (demo_release)
    bad: str = ""  # the shuffled-label candidate's version
    current_log: Path | None = None
    last_code: int = 0

    # -- helpers ---------------------------------------------------------------------------
    @property
    def capture(self) -> Path:
        return self.build / "capture"

    @property
    def python(self) -> str:
        return str(self.project / ".venv" / "bin" / "python")

    def make_env(self, **extra: str) -> dict[str, str]:
        env = dict(self.env)
        if self.engine:
            env.update(self.engine.env)
        env.update(self.registry_env)
        env.setdefault("ACT_MODE", "self-hosted")  # no runner image can be pulled; jobs run here
        env.update(extra)
        return env

    def run(
        self,
        command: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        check: bool = True,
    ) -> str:
        """Run a command, its output appended live to the step's log; returns that output.

        With check, a failing command raises DemoError with the end of its output.
        """
        log = self.current_log
        assert log is not None
        lines: list[str] = []
        with log.open("a") as handle:
            handle.write(f"\n$ {' '.join(command)}\n")
            handle.flush()
            started = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=cwd or self.project, env=env or self.make_env(), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, errors="replace",
            )  # fmt: skip
            assert process.stdout is not None
            for line in process.stdout:
                handle.write(line)
                handle.flush()
                lines.append(line)
            code = process.wait()
            handle.write(f"[exit {code} after {time.perf_counter() - started:.1f} s]\n")
        self.last_code = code
        if check and code != 0:
            tail = "".join(lines[-30:]).rstrip()
            raise DemoError(f"`{' '.join(command)}` failed with exit code {code} (log: {log}):\n{tail}")
        return "".join(lines)

    def make(self, *targets: str, env: dict[str, str] | None = None, **variables: str) -> str:
        command = ["make", *targets, *(f"{key}={value}" for key, value in variables.items())]
        return self.run(command, env=env)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        result = subprocess.run(
            ["git", *args], cwd=cwd or self.project, capture_output=True, text=True, check=False,
            env={**self.env, "GIT_TERMINAL_PROMPT": "0"},
        )  # fmt: skip
        if result.returncode != 0:
            raise DemoError(f"git {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout.strip()

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args],
            env=self.make_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise DemoError(
                f"docker {' '.join(args[:2])} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def act(self, command: list[str], workflow: str, env: dict[str, str]) -> dict[str, str]:
        """Run a workflow under act; every job must succeed. Returns job -> outcome.

        On failure the message carries the last lines of each failed job (act interleaves
        the jobs' output), which is where the reason is.
        """
        output = self.run(command, env=env, check=False)
        outcomes = {match["job"].strip(): match["outcome"] for match in JOB_END.finditer(output)}
        failed = sorted(job for job, outcome in outcomes.items() if outcome != "succeeded")
        if self.last_code == 0 and outcomes and not failed:
            return outcomes
        if not failed:
            tail = "".join(output.splitlines(keepends=True)[-25:]).rstrip()
            raise DemoError(
                f"{workflow} under act exited {self.last_code} (log: {self.current_log}):\n{tail}"
            )
        parts = []
        for job in failed:
            own = [
                line for line in output.splitlines() if re.match(rf"^\[[^/\]]+/{re.escape(job)}\s*\]", line)
            ]
            parts.append(f"--- {job} ---\n" + "\n".join(own[-15:]))
        raise DemoError(
            f"{workflow} under act: job(s) {', '.join(failed)} failed (log: {self.current_log}):\n"
            + "\n".join(parts)
        )

    def read_json(self, path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DemoError(f"{path} is missing or not JSON: {error}") from None

    def wait_ready(self, seconds: float = 90) -> None:
        url = f"http://127.0.0.1:{self.port}/v2/health/ready"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.server is not None and self.server.poll() is not None:
                raise DemoError(
                    f"the service exited with code {self.server.returncode} (log: {self.current_log})"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise DemoError(f"the service did not become ready at {url} within {seconds:.0f} s")

    def reset(self) -> None:
        """A fresh build folder: nothing of an earlier run (project, origin, capture) survives."""
        previous = self.build / "summary.json"
        if previous.is_file():
            self.stale_registry = json.loads(previous.read_text()).get("registry_host") or ""
        if self.build.exists():
            try:
                shutil.rmtree(self.build)
            except PermissionError as error:
                raise DemoError(
                    f"cannot remove the previous run's {self.build}: {error}. Files the container wrote "
                    f"under {self.capture} belong to uid {CONTAINER_UID.split(':')[0]}: remove them as root "
                    "(sudo rm -rf build/demo), then run make demo again"
                ) from None
        (self.build / "logs").mkdir(parents=True)

    # -- steps -----------------------------------------------------------------------------
    def scaffold(self) -> str:
        """Bake the defaults; give the project a local bare repository as `origin`.

        With a container engine, the registry stand-in starts first and the project is baked
        with it as its container registry (the one prompt the demo answers), so every make
        target, workflow and overlay of the project names it, as they would name ghcr.io.
        """
        from cookiecutter.main import cookiecutter

        context: dict[str, str] = {}
        if self.engine and self.engine.available:
            self.registry = RegistryStandIn(self.build / "registry-stand-in")
            host = self.registry.start(self.log_text, self.engine.kind, self.make_env())
            owner = str(json.loads((ROOT / "cookiecutter.json").read_text())["github_owner"]).lower()
            context["container_registry"] = f"{host}/{owner}"
            if self.engine.kind == "podman":
                # The podman CLI reads a registries.conf per process (the API service does not).
                self.registry_env = {**self.registry.podman_env(), "DOCKER": "podman"}
            kind = "the registry:2 image" if self.registry.container else "docker-registry"
            self.evidence.facts["container registry"] = f"LOCAL STAND-IN at {host} ({kind})"
        self.project = Path(
            cookiecutter(str(ROOT), no_input=True, output_dir=str(self.build), extra_context=context)
        )
        if not (self.project / ".git").is_dir():
            raise DemoError(
                "the bake made no git repository (git_init=yes is the default): is git installed?"
            )
        self.origin = self.build / "origin.git"
        self.git("init", "--quiet", "--bare", "--initial-branch=main", str(self.origin), cwd=self.build)
        self.git("remote", "add", "origin", str(self.origin))
        self.git("push", "--quiet", "origin", "main")
        event = self.read_json(self.project / ".github" / "act" / "events" / "pull_request.json")
        self.repository = event["repository"]["full_name"]
        self.evidence.facts["project"] = str(self.project)
        self.evidence.facts["origin (local bare repository)"] = str(self.origin)
        where = self.project.relative_to(ROOT) if self.project.is_relative_to(ROOT) else self.project
        registry = f", registry stand-in {context['container_registry']}" if context else ""
        return f"{where} (repository {self.repository}, origin {self.origin.name}{registry})"

    def find_engine(self) -> str:
        """A Docker-API engine for the image, or none (then the service runs as a process)."""
        self.engine = demo_engine.find(ROOT, self.env, lambda text: self.log_text(text))
        self.evidence.facts["container engine"] = self.engine.note
        if self.engine.available and self.stale_registry:
            # The previous run's images are tagged with its registry stand-in, gone since: untag them.
            listed = self.docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
            stale = [name for name in listed if name.startswith(f"{self.stale_registry}/")]
            if stale:
                self.docker("rmi", *stale, check=False)
                self.log_text(f"removed {len(stale)} image tag(s) of the previous run's registry stand-in")
        if not self.engine.available and os.environ.get("REQUIRE_CONTAINER_ENGINE") == "1":
            raise DemoError(f"REQUIRE_CONTAINER_ENGINE=1 but {self.engine.note}")
        return self.engine.note

    def log_text(self, text: str) -> None:
        if self.current_log and text:
            with self.current_log.open("a") as handle:
                handle.write(text + "\n")

    def install(self) -> str:
        self.make("install")
        return "locked environment from requirements/dev.txt"

    def lint(self) -> str:
        self.make("lint")
        return "ruff + import-linter domain boundaries"

    def test(self) -> str:
        # The slow tests (a 10,000-request capture run) run in CI: pr.yml's lint + unit tests job.
        options = self.unit_tests or "-m 'not slow'"
        output = self.run(["make", "test"], env=self.make_env(PYTEST_ADDOPTS=options))
        found = re.findall(r"(\d+) passed", output)
        return f"{found[-1] if found else '?'} tests passed ({options}; CI runs all)"

    def data(self) -> str:
        self.make("data")
        snapshot = (self.project / "artifacts" / "snapshots" / "latest").read_text().strip()
        self.evidence.facts["training snapshot"] = snapshot
        return f"snapshot {snapshot}"

    def validate(self) -> str:
        output = self.make("validate")
        docs = self.project / "reports" / "data_docs" / "index.html"
        if not docs.is_file():
            raise DemoError(f"make validate passed but wrote no Data Docs at {docs}")
        self.evidence.links["Data Docs (Great Expectations)"] = docs
        found = re.search(r"validation of .*", output)
        return found.group(0) if found else "passed"

    def model_dir(self, models: Path) -> Path:
        pointer = models / "latest"
        if pointer.is_dir():
            return pointer.resolve()
        return models / pointer.read_text().strip()

    def train(self) -> str:
        self.make("train")  # returns while the MLflow run is recorded in the background
        self.make("track-wait")  # as CI does before it reads run.json or uploads the store
        folder = self.model_dir(self.project / "artifacts" / "models")
        metrics = self.read_json(folder / "metrics.json")
        parity = self.read_json(folder / "parity.json")
        gates = self.read_json(folder / "gates.json")
        gate_list = gates["gates"]
        passed = sum(1 for gate in gate_list if gate.get("passed"))
        self.evidence.facts["first model"] = folder.name
        run = self.read_json(folder / "run.json")  # the MLflow run make train recorded
        self.evidence.facts["MLflow run of the first model"] = f"{run['run_id']} in {run['tracking_uri']}"
        self.evidence.links["MLflow store (browse it: make ui)"] = self.project / "artifacts" / "mlflow"
        auc = metrics["metrics"]["roc_auc"]
        return (
            f"{folder.name}: roc_auc {auc:.3f}, {passed}/{len(gate_list)} gates, "
            f"ONNX parity {parity.get('max_abs_diff', float('nan')):.1e}; MLflow run {run['run_id'][:12]}"
        )

    # New applications, three of them breaking the data contract (rule: min, categories, finite).
    SCORE_INPUT = (
        "import sys\n"
        "from data_pipelines.example import generate\n"
        "from governance.core.contract import load\n"
        "frame = generate(200_000, seed=5)[load().feature_names]\n"
        "frame.loc[10, 'age'] = 17\n"
        "frame.loc[20, 'employment_type'] = 'pirate'\n"
        "frame.loc[30, 'loan_amount'] = float('inf')\n"
        "frame.to_csv(sys.argv[1], index=False)\n"
    )
    SCORE_REJECTS = (
        "import sys, pandas as pd\n"
        "rejects = pd.read_parquet(sys.argv[1]).sort_values('row')\n"
        "print(rejects[['row', 'field', 'rule', 'reason']].to_string(index=False))\n"
    )

    def batch_score(self) -> str:
        """`make score` on a CSV of new applications: every row scored or rejected with its reason."""
        data, out = self.build / "score-input.csv", self.build / "scored"
        self.run([self.python, "-c", self.SCORE_INPUT, str(data)])
        output = self.make("score", DATA=str(data), OUT=str(out))
        found = re.search(r"scored (\d+) of (\d+) rows \((\d+) rejected\)[^,]*, ([\d,]+ rows/s)", output)
        if not found or found.group(3) != "3" or int(found.group(1)) + 3 != int(found.group(2)):
            raise DemoError(f"make score: 3 rows rejected, every other scored, expected: {output[-800:]}")
        rejects = self.run([self.python, "-c", self.SCORE_REJECTS, str(out / "rejects")])
        for name in ("age", "employment_type", "loan_amount"):
            if name not in rejects:
                raise DemoError(f"the rejects file does not name field {name!r}:\n{rejects}")
        self.evidence.inline["Batch scoring: the rejected rows and why"] = rejects
        self.evidence.facts["batch scoring (make score)"] = found.group(0)
        scored, total, speed = found.group(1), found.group(2), found.group(4)
        return f"{scored} of {total} rows scored, 3 rejected with their reasons ({speed})"

    def tune(self) -> str:
        """A short Optuna study; its chosen settings are a diff to review (the demo does not keep it)."""
        output = self.make("tune", TRIALS=str(TUNING_TRIALS))
        report = self.project / "reports" / "tuning" / "index.html"
        if not report.is_file() or not (report.parent / "pareto.png").is_file():
            raise DemoError(f"make tune wrote no report with a Pareto front at {report}")
        self.evidence.links["Tuning report (Optuna study, Pareto front)"] = report
        diff = self.git("diff", "ml/params.yaml")
        self.evidence.inline["Tuning's proposed change to ml/params.yaml"] = diff or "(no change proposed)"
        self.git("checkout", "--quiet", "--", "ml/params.yaml")
        chosen = re.search(r"chosen trial .*", output)
        picked = chosen.group(0) if chosen else "no choice printed"
        return f"{TUNING_TRIALS} trials, nested MLflow runs; {picked}"

    def register(self) -> str:
        self.make("register")
        version = self.evidence.facts["first model"]
        card = self.project / "governance" / "model_cards" / f"{version}.md"
        if not card.is_file():
            raise DemoError(f"make register wrote no model card at {card}")
        self.evidence.links[f"Model card of {version}"] = card
        self.evidence.inline[f"Model card of {version} (the first model)"] = card.read_text()
        return f"{version} is a candidate in governance/registry.yaml; model card {card.name}"

    def package(self) -> str:
        if not self.engine or not self.engine.available:
            return "SKIPPED the image: no container engine (the service runs as a process instead)"
        output = self.make("image", "image-test")
        built = re.findall(r"==> built (\S+) in", output)
        if not built:
            raise DemoError(f"make image did not say which image it built (log: {self.current_log})")
        self.image = built[-1]
        size = self.docker("image", "inspect", self.image, "--format", "{{.Size}}").stdout.strip()
        checks = len(re.findall(r"^\s+ok\s", output, re.M))
        self.evidence.facts["serving image"] = self.image
        return f"{self.image}, {int(size) / 1e6:.0f} MB, image-test passed ({checks} checks)"

    def deploy(self) -> str:
        """The first model goes live the GitOps way: pushed, pinned for staging, promoted.

        `make image-push` pushes to the registry stand-in and records the digest;
        `make pin-staging` and `make promote` change the registry and the overlays (without a
        token they only write what their pull request would say); the demo commits those
        changes to main, standing in for the two reviewed pull requests being merged.
        """
        if not self.engine or not self.engine.available or self.registry is None:
            return "SKIPPED: no container engine, so no image to deploy; the model stays a candidate"
        version = self.evidence.facts["first model"]
        self.make("image-push")
        record = self.read_json(self.project / "artifacts" / "image.json")
        self.pushed_repository = record["image"].split("/", 1)[1]
        if not self.registry.has_manifest(self.pushed_repository, record["digest"]):
            raise DemoError(
                f"make image-push recorded digest {record['digest']} for {record['image']}, but the registry "
                "stand-in holds no manifest with that digest: the recorded digest is not the pushed one "
                "(deploy/push_image.py), so an overlay pinning it could never be pulled"
            )
        self.make("pin-staging")
        self.make("promote", env=self.make_env(VERSION=version))
        self.git("add", "governance", "deploy/overlays")
        self.git("commit", "--quiet", "-m", f"Deploy {version}: staging, then production (GitOps)")
        self.git("push", "--quiet", "origin", "main")
        self.evidence.facts["champion (production)"] = f"{version} at {record['reference']}"
        self.champion_digest = record["digest"]
        return f"pushed {record['digest'][:19]}…; {version} pinned in staging, promoted to production (main)"

    def serve(self) -> str:
        return self.start_service(self.capture)

    def start_service(self, capture: Path, model: Path | None = None, challenger: Path | None = None) -> str:
        """The image (or `make serve` without an engine) on a free port, capturing into `capture`.

        `model` replaces the model baked into the image (a model folder, mounted read-only);
        `challenger` is scored in shadow beside it (SHADOW_MODEL_PATH).
        """
        capture.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        swapped = {"MODEL_PATH": model, "SHADOW_MODEL_PATH": challenger}
        chosen = {name: folder for name, folder in swapped.items() if folder is not None}
        if self.image:
            # uid 10001 writes the capture into a host folder through a bind mount, the root
            # filesystem stays read-only (as in Kubernetes), /tmp is a tmpfs.
            capture.chmod(0o777)
            # The feedback token key, mounted read-only where the Kubernetes Secret goes: the image
            # runs with APP_ENV=production, which refuses to start without one.
            secrets_folder = self.build / "secrets"
            secrets_folder.mkdir(exist_ok=True)
            (secrets_folder / "key").write_text(secrets.token_urlsafe(32) + "\n")
            (secrets_folder / "key").chmod(0o644)  # readable by uid 10001 through the bind mount
            # Named after the build folder too, so two demos (e.g. the test suite's) never collide.
            suffix = hashlib.sha256(str(self.build).encode()).hexdigest()[:8]
            self.container = f"demo-{self.project.name}-{suffix}"
            self.docker("rm", "--force", self.container, check=False)
            extra: list[str] = []
            for name, folder in chosen.items():  # each model folder mounted read-only, its setting set
                mount = f"/models/{name.lower()}"
                extra += ["--volume", f"{folder}:{mount}:ro", "--env", f"{name}={mount}"]
            self.docker(
                "run", "--detach", "--name", self.container, "--read-only", "--tmpfs", "/tmp",
                "--user", CONTAINER_UID, "--publish", f"127.0.0.1:{self.port}:8080",
                "--volume", f"{capture}:/capture", "--env", "CAPTURE_URI=/capture",
                "--volume", f"{secrets_folder}:/var/run/secrets/feedback:ro",
                "--env", "FEEDBACK_KEY_FILE=/var/run/secrets/feedback/key",
                *extra, "--stop-timeout", "30", self.image,
            )  # fmt: skip
            try:
                self.wait_ready()
            except DemoError:
                logs = self.docker("logs", self.container, check=False)
                self.log_text(logs.stdout + logs.stderr)
                raise
            return (
                f"container {self.container} ({self.image}) on 127.0.0.1:{self.port}, "
                "read-only root, uid 10001"
            )
        log = self.current_log.open("a") if self.current_log else subprocess.DEVNULL
        env = self.make_env(
            PORT=str(self.port), GRPC_PORT=str(free_port()), CAPTURE_URI=str(capture),
            **{name: str(folder) for name, folder in chosen.items()},
        )  # fmt: skip
        self.server = subprocess.Popen(
            ["make", "serve"], cwd=self.project, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=env,
        )  # fmt: skip
        self.wait_ready()
        return f"NO CONTAINER ENGINE: `make serve` as a process on 127.0.0.1:{self.port}"

    def traffic_phase(self, rows: int, seed: int, covariate: float, concept: float) -> dict:
        """One phase of scripts/demo_traffic.py against the running service: what it acknowledged."""
        output = self.run(
            [self.python, str(ROOT / "scripts" / "demo_traffic.py"), "--url", f"http://127.0.0.1:{self.port}",
             "--project", str(self.project), "--rows", str(rows), "--seed", str(seed),
             "--covariate-drift", str(covariate), "--concept-drift", str(concept),
             "--feedback-share", str(FEEDBACK_SHARE)]
        )  # fmt: skip
        return json.loads(output.strip().splitlines()[-1])

    def send_traffic(self) -> str:
        for phase, rows, seed, covariate, concept in TRAFFIC:
            self.traffic[phase] = self.traffic_phase(rows, seed, covariate, concept)
        rows = sum(item["rows"] for item in self.traffic.values())
        labels = sum(item["labelled"] for item in self.traffic.values())
        shares = ", ".join(
            f"{p} {i['predicted_positive_share']:.0%} predicted default" for p, i in self.traffic.items()
        )
        return f"{rows} rows scored, {labels} labels fed back via /feedback ({shares})"

    def stop(self) -> str:
        """SIGTERM and wait: the service flushes its capture buffer before it exits."""
        how = self.stop_service()
        kinds = demo_release.capture_kinds(self.capture)
        predictions, feedback = kinds.get("prediction", 0), kinds.get("feedback", 0)
        sent = sum(item["rows"] for item in self.traffic.values())
        labelled = sum(item["labelled"] for item in self.traffic.values())
        if (predictions, feedback) != (sent, labelled):
            raise DemoError(
                f"capture lost data: {predictions} predictions and {feedback} labels in {self.capture}, "
                f"but the service acknowledged {sent} and {labelled}"
            )
        self.evidence.links["Capture store (JSON lines, partitioned by date)"] = self.capture
        return (
            f"{how}; every acknowledged row is in the capture: {predictions} predictions, {feedback} labels"
        )

    def stop_service(self) -> str:
        """Stop what start_service started (SIGTERM, its capture flushed); says how."""
        if self.container:
            self.docker("stop", "--time", "30", self.container, timeout=90)
            state = json.loads(self.docker("inspect", self.container).stdout)[0]["State"]
            logs = self.docker("logs", self.container, check=False)
            self.log_text(logs.stdout + logs.stderr)
            self.docker("rm", self.container, check=False)
            self.container = ""
            if state.get("ExitCode") != 0:
                raise DemoError(f"the container exited with code {state.get('ExitCode')} on SIGTERM, not 0")
            return "docker stop (SIGTERM)"
        stop_process(self.server, seconds=60)
        self.server = None
        return "SIGTERM to make serve"

    def drift(self) -> str:
        self.make("drift", env=self.make_env(CAPTURE_URI=str(self.capture)))
        reports = self.project / "reports" / "drift"
        summary = self.read_json(reports / "drift.json")
        decision = summary.get("decision", {})
        self.evidence.links["Drift report (HTML)"] = reports / "report.html"
        self.evidence.inline["Drift summary (the retraining PR's body)"] = (
            reports / "summary.md"
        ).read_text()
        if decision.get("status") != "retrain":
            raise DemoError(
                f"the drift check decided {decision.get('status')!r}, not 'retrain', on traffic with "
                f"covariate drift: {decision.get('reasons')}"
            )
        dataset = summary.get("dataset") or {}
        snapshot = (dataset.get("manifest") or {}).get("snapshot_id")
        self.evidence.facts["retraining snapshot (from the capture)"] = str(snapshot)
        triggered = [check["name"] for check in decision.get("checks", []) if check.get("triggered")]
        return (
            f"decision: retrain ({', '.join(triggered)}); "
            f"new validated snapshot {snapshot} ({dataset.get('rows')} rows)"
        )

    def retrain_pr(self) -> str:
        self.github = GitHubStandIn(
            self.project, self.repository, self.origin, self.build / "github-stand-in"
        )
        url = self.github.start()
        self.evidence.facts["GitHub REST API"] = f"LOCAL STAND-IN (tests/support/github_standin.py) at {url}"
        env = self.make_env(**self.github.env())
        self.make("retrain-pr", env=env)
        opened = [pull for pull in self.github.pulls("open") if pull["head"]["ref"] == "retrain/auto"]
        if len(opened) != 1:
            raise DemoError(f"expected one open retraining PR on the stand-in, found {len(opened)}")
        self.pull = opened[0]["number"]
        pushed = self.git("ls-remote", "--heads", str(self.origin), "retrain/auto")
        # Idempotence: the scheduled check fires again on the same drift before anyone merged:
        # same PR, no new commit, no comment.
        self.make("retrain-pr", env=env)
        pulls = [pull for pull in self.github.pulls("all") if pull["head"]["ref"] == "retrain/auto"]
        if len(pulls) != 1:
            raise DemoError(f"re-running retrain-pr made {len(pulls)} retraining PRs, not 1")
        branch = self.git("ls-remote", "--heads", str(self.origin), "retrain/auto")
        if not branch:
            raise DemoError("the retraining branch retrain/auto is not in origin")
        if branch != pushed or self.github.comments(self.pull):
            raise DemoError("re-running retrain-pr on the same request added a commit or a comment")
        self.evidence.facts["retraining PR"] = f"#{self.pull} from retrain/auto on the stand-in"
        self.evidence.inline[f"Retraining PR #{self.pull} body"] = pulls[0]["body"]
        return (
            f"PR #{self.pull} opened (branch retrain/auto pushed to origin); "
            "a re-run changed nothing, still 1 PR"
        )

    def ci(self) -> str:
        """act runs pr.yml on the retraining branch, with the PR's event, against the stand-in."""
        assert self.github is not None
        self.git("fetch", "--quiet", "origin")
        self.git("checkout", "--quiet", "--force", "-B", "retrain/auto", "origin/retrain/auto")
        request = self.read_json(self.project / "governance" / "retraining" / "request.json")
        wanted = (request.get("snapshot") or {}).get("snapshot_id")
        # The payload GitHub would send for this pull request (act reads it from this file).
        event_file = self.project / ".github" / "act" / "events" / "pull_request.json"
        event = self.read_json(event_file)
        event["number"] = event["pull_request"]["number"] = self.pull
        event["pull_request"]["title"] = f"retraining PR #{self.pull}"
        event["pull_request"]["head"]["ref"] = "retrain/auto"
        event["pull_request"]["base"]["ref"] = "main"
        event_file.write_text(json.dumps(event, indent=2) + "\n")
        try:
            narrowed = {"PYTEST_ADDOPTS": self.unit_tests} if self.unit_tests else {}
            outcomes = self.act(
                ["make", "ci"],
                "pr.yml",
                self.make_env(CAPTURE_URI=str(self.capture), **self.github.env(), **narrowed),
            )
        finally:
            self.git("checkout", "--quiet", "--", str(event_file.relative_to(self.project)))
        comments = [c for c in self.github.comments(self.pull) if PR_MARKER in c["body"]]
        if len(comments) != 1:
            raise DemoError(
                f"expected one CI results comment on PR #{self.pull} at the stand-in, found {len(comments)}"
            )
        comment = self.build / "pr-comment.md"
        comment.write_text(comments[0]["body"])
        self.evidence.links[f"PR comment on #{self.pull} (as stored by the GitHub stand-in)"] = comment
        self.evidence.inline[f"CI results comment on PR #{self.pull}"] = comments[0]["body"]
        artifacts = self.project / "reports" / "act" / "pr"
        self.evidence.links["CI artifacts of pr.yml (act)"] = artifacts
        trainings = sorted(artifacts.glob("train-results/artifacts/models/*/training.json"))
        if not trainings:
            raise DemoError(f"pr.yml left no training record under {artifacts}/train-results")
        trained = (self.read_json(trainings[-1]).get("data") or {}).get("snapshot_id")
        candidate = trainings[-1].parent.name
        card = artifacts / "model-card" / "model_cards" / f"{candidate}.md"
        if card.is_file():
            self.evidence.links[f"Model card of the retrained candidate {candidate} (CI artifact)"] = card
        self.evidence.facts["retrained candidate (CI)"] = f"{candidate} on snapshot {trained}"
        if trained != wanted:
            raise DemoError(
                f"pr.yml trained the candidate on snapshot {trained}, not on the retraining snapshot "
                f"{wanted} that this PR requests (governance/retraining/request.json): the PR's data job "
                "does not yet rebuild the requested snapshot, so CI did not retrain on the new data"
            )
        return (
            f"{len(outcomes)} jobs green; candidate {candidate} trained on {trained}; "
            f"comment posted on #{self.pull}"
        )

    def merge(self) -> str:
        assert self.github is not None
        self.git("checkout", "--quiet", "--force", "main")
        self.git("merge", "--quiet", "--ff-only", "retrain/auto")
        self.git("push", "--quiet", "origin", "main")
        self.github.close(self.pull)
        head = self.git("rev-parse", "--short", "HEAD")
        return f"retrain/auto fast-forwarded into main at {head} (origin and local); PR #{self.pull} closed"

    def cd(self) -> str:
        """act runs cd.yml for the push to main: image pushed to the registry stand-in, GitOps PR."""
        assert self.github is not None
        if not self.engine or not self.engine.available:
            raise DemoError(
                "cd.yml builds and pushes the image: it needs a container engine, and none answers"
            )
        if self.registry is None or not self.pushed_repository:
            raise DemoError(
                "cd.yml pushes to the registry stand-in: it needs that stand-in and the deploy step's push"
            )
        extra = self.github.env()
        self.act(
            [self.python, ".github/act/run_act.py", "push", ".github/workflows/cd.yml"],
            "cd.yml",
            self.make_env(**extra),
        )
        gitops = [p for p in self.github.pulls("open") if p["head"]["ref"] == "gitops/staging"]
        if len(gitops) != 1:
            raise DemoError(
                f"expected one open GitOps PR from gitops/staging on the stand-in, found {len(gitops)}"
            )
        overlay = self.github.file("gitops/staging", "deploy/overlays/staging/kustomization.yaml")
        digest = re.search(r"digest:\s*(sha256:[0-9a-f]{64})", overlay or "")
        if not digest:
            raise DemoError("the GitOps PR does not pin an image digest in deploy/overlays/staging")
        if not self.registry.has_manifest(self.pushed_repository, digest.group(1)):
            raise DemoError(
                f"the staging overlay pins {digest.group(1)}, which the registry stand-in does not hold: "
                "the recorded digest is not the pushed one"
            )
        if digest.group(1) == self.champion_digest:
            raise DemoError(f"the GitOps PR pins the champion's own image {digest.group(1)}, not the new one")
        saved = self.build / "staging-kustomization.yaml"
        saved.write_text(overlay or "")
        self.evidence.links[f"Staging overlay in GitOps PR #{gitops[0]['number']}"] = saved
        self.evidence.inline[f"GitOps PR #{gitops[0]['number']} body"] = gitops[0]["body"]
        self.evidence.facts["staging digest (GitOps)"] = digest.group(1)
        number = gitops[0]["number"]
        return f"image pushed to the registry stand-in; GitOps PR #{number} pins {digest.group(1)[:19]}…"

    def close(self) -> None:
        """Stop whatever this run started, even after a failure."""
        if self.container:
            self.docker("rm", "--force", self.container, check=False)
        stop_process(self.server)
        for stand_in in (self.github, self.registry):
            if stand_in is not None:
                stand_in.stop()


PLAN: list[tuple[str, str, Callable[[Demo], str]]] = [
    (
        "container engine",
        "docker info, or podman's Docker API (scripts/container-engine.sh)",
        Demo.find_engine,
    ),
    ("scaffold", "registry stand-in; cookiecutter defaults, git init, local bare origin", Demo.scaffold),
    ("install", "make install", Demo.install),
    ("lint", "make lint", Demo.lint),
    ("test", "make test (-m 'not slow')", Demo.test),
    ("data", "make data: a content-addressed snapshot", Demo.data),
    ("validate", "make validate: Great Expectations + Data Docs", Demo.validate),
    ("train", "make train: gates, ONNX export, parity", Demo.train),
    ("register", "make register: registry entry + model card", Demo.register),
    ("batch score", "make score: a CSV of new applications, 3 rows breaking the contract", Demo.batch_score),
    ("tune", "make tune: an Optuna study, a params diff to review", Demo.tune),
    ("package", "make image image-test", Demo.package),
    ("deploy", "make image-push pin-staging promote: the first model goes live", Demo.deploy),
    ("serve", "run the image (or make serve)", Demo.serve),
    ("traffic", "production-like, then drifted traffic; labels via /feedback", Demo.send_traffic),
    ("stop", "graceful stop; capture flushed and complete", Demo.stop),
    ("drift", "make drift (CAPTURE_URI): drift, performance, bias, decision", Demo.drift),
    ("retrain-pr", "make retrain-pr against the GitHub stand-in, twice", Demo.retrain_pr),
    ("ci", "make ci: act runs pr.yml on the retraining branch", Demo.ci),
    ("merge", "fast-forward the PR into main (origin + local)", Demo.merge),
    ("cd", "act runs cd.yml: push image, GitOps PR pinning the digest", Demo.cd),
    ("shadow", "staging merged; its model in shadow beside the champion, live traffic", demo_release.shadow),
    ("compare", "make compare: champion vs challenger on that traffic -> promote", demo_release.compare),
    ("promote", "make promote: the production GitOps PR carries the comparison", demo_release.promote),
    (
        "bad candidate",
        "shuffled labels: gates fail; in shadow make compare -> reject",
        demo_release.bad_candidate,
    ),
    ("rollback", "forced into production: post-deploy check -> one rollback PR", demo_release.forced),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUILD, help="where to build (default: build/demo)")
    parser.add_argument(
        "--keep-going", action="store_true", help="run the remaining steps after a failure (still exits 1)"
    )
    parser.add_argument(
        "--until",
        choices=[name for name, _, _ in PLAN],
        help="stop after this step (a documented subset of the lifecycle, e.g. for quick re-runs)",
    )
    parser.add_argument(
        "--unit-tests",
        default="",
        metavar="PYTEST_OPTIONS",
        help="pytest options for the project's unit tests in the test and ci steps "
        "(default: the fast set in the test step, all of them in ci's pr.yml run)",
    )
    args = parser.parse_args(argv)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in DROPPED_ENV and not key.startswith("GITHUB_")
    }
    env["GX_ANALYTICS_ENABLED"] = "false"
    demo = Demo(build=args.out.resolve(), env=env, unit_tests=args.unit_tests)
    steps = [Step(name, what) for name, what, _ in PLAN]
    started = time.perf_counter()
    failed = False
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so close() runs on `kill`
    try:
        demo.reset()
        for number, ((name, _, action), step) in enumerate(zip(PLAN, steps, strict=True), start=1):
            if failed and not args.keep_going:
                break
            print(f"[{number:2}/{len(PLAN)}] {name}: {step.what} ...", flush=True)
            step.log = demo.current_log = demo.build / "logs" / f"{number:02}-{name.replace(' ', '-')}.log"
            clock = time.perf_counter()
            try:
                step.note = action(demo)
                step.status = "ok"
            except (DemoError, StandInError, OSError, subprocess.SubprocessError) as error:
                step.status, step.note, failed = "FAILED", str(error), True
            except Exception as error:  # a bug in the demo itself: still report the step, then stop
                step.status, step.note, failed = "FAILED", f"{type(error).__name__}: {error}", True
            step.seconds = time.perf_counter() - clock
            first = step.note.splitlines()[0] if step.note else ""
            print(f"      {step.status} in {step.seconds:.1f} s: {first}", flush=True)
            if name == args.until:
                print(f"      stopping after '{name}' as asked (--until)", flush=True)
                break
    except DemoError as error:
        print(f"make demo: {error}", file=sys.stderr)
        return 1
    finally:
        demo.close()
    total = time.perf_counter() - started
    print("\n" + table(steps, total))
    if demo.build.is_dir():
        page = index_page(demo.build / "index.html", steps, demo.evidence, total)
        (demo.build / "summary.json").write_text(
            json.dumps(
                {
                    "ok": not failed,
                    "until": args.until,
                    "seconds": round(total, 1),
                    "steps": [
                        {"name": s.name, "status": s.status, "seconds": round(s.seconds, 1), "note": s.note}
                        for s in steps
                    ],
                    "facts": demo.evidence.facts,
                    "registry_host": demo.registry.host if demo.registry else "",
                    "links": {title: str(path) for title, path in demo.evidence.links.items()},
                },
                indent=2,
            )
            + "\n"
        )  # fmt: skip
        print(f"\nIndex of every report: {page}")
        for title, path in demo.evidence.links.items():
            print(f"  {title}: {path}")
    if failed:
        broken = next(step for step in steps if step.status == "FAILED")
        print(f"\nmake demo FAILED at step '{broken.name}':\n{broken.note}", file=sys.stderr)
        return 1
    done = [step for step in steps if step.status == "ok"]
    scope = "Every step" if len(done) == len(steps) else f"Steps 1-{len(done)} (--until {args.until})"
    print(f"\n{scope} green in {total:.0f} s. The project: cd {demo.project} && make help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
