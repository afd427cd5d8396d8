"""A live Prefect server, MLflow server and served `pipeline` deployment on 127.0.0.1, for the browser tests.

Without a Chromium on PATH the tests skip (``SHAPPRUNE_REQUIRE_BROWSER=1``, set by .ci/run, makes that a
failure). ``SHAPPRUNE_UI_TARGETS`` picks what the served run reproduces: ``sample_masks`` by default (two stages,
enough to show a parent run with nested stage runs and their metrics), ``all`` for the whole tiny
pipeline (what ``make screenshots`` uses). ``SHAPPRUNE_SCREENSHOTS`` is where screenshots go (default:
the test's temporary directory).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.browser.cdp import find_chromium
from tests.conftest import tiny_llama
from tests.flows.conftest import tiny_params

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "pipeline/shapprune-pipeline"
NO_CHROMIUM = "no chromium on PATH: `apt-get install -y chromium` (scripts/install_browser.sh; .ci/run installs it)"


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a headless Chromium (skipped when chromium is absent)")


TRANSIENT = {429, 502, 503, 504}  # what Prefect's own client retries (a busy sqlite answers 503)


def api_call(method: str, url: str, patience: float = 120, **kwargs) -> httpx.Response:
    """One Prefect REST call, retried on transient answers and dropped connections, as Prefect's client does."""
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            resp = httpx.request(method, url, timeout=30, **kwargs)
            if resp.status_code not in TRANSIENT:
                return resp
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        else:
            if time.monotonic() > deadline:
                return resp
        time.sleep(delay)
        delay = min(2 * delay, 5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Prefect / MLflow endpoints of its own, the venv first on PATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING_URI"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    return env | extra


class Process:
    """A background command in its own process group, with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], cwd: Path, env: dict[str, str], logs: Path) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        self.port = int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else None
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not up at {url} after {timeout:.0f}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@dataclass
class ServedRun:
    """The finished flow run of the served deployment and where to look at it."""

    project: Path
    prefect_url: str
    mlflow_url: str
    tracking_uri: str
    flow_run: dict
    targets: list[str] | None
    logs: Path


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("SHAPPRUNE_REQUIRE_BROWSER") == "1":  # CI: a missing browser is a failure
            pytest.fail(NO_CHROMIUM)
        pytest.skip(NO_CHROMIUM)
    return path


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    out = os.environ.get("SHAPPRUNE_SCREENSHOTS")
    path = Path(out).resolve() if out else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def ui_project(tmp_path_factory, smol_tokenizer) -> Path:
    """A fresh git + DVC checkout of the project's code and dvc.yaml with the tiny test params."""
    base = tmp_path_factory.mktemp("ui")
    model = base / "tiny-llama"
    tiny_llama().save_pretrained(model)
    smol_tokenizer.save_pretrained(model)
    project = base / "project"
    project.mkdir()
    for name in ("flows", "tasks", "shapprune"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", project)
    (project / "params.yaml").write_text(yaml.safe_dump(tiny_params(model), sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=project, env=clean_env(), check=True, capture_output=True)
    return project


@pytest.fixture(scope="module")
def ui_servers(chromium_path, tmp_path_factory):
    """Start a Prefect server and an MLflow server (the latter on the project's sqlite store) on loopback.

    Only started here; ``served_run`` waits for them, so they boot while the project is being built.
    """
    logs = tmp_path_factory.mktemp("ui-logs")
    prefect_port, mlflow_port = free_port(), free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    store = logs / "mlflow.db"
    started = [
        Process(
            "prefect-server",
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            logs,
            clean_env(PREFECT_HOME=str(logs / "prefect-home"), PREFECT_UI_API_URL=api, PREFECT_API_URL=api),
            logs,
        ),
        Process(
            "mlflow-server",
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(mlflow_port)]
            + ["--workers", "1", "--backend-store-uri", f"sqlite:///{store}"],
            logs,
            clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
            logs,
        ),
    ]
    try:
        yield started, logs, store
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture(scope="module")
def served_run(ui_servers, ui_project):
    """Serve the `pipeline` deployment, trigger it through the Prefect REST API and wait for it to finish."""
    (prefect, mlflow), logs, store = ui_servers
    prefect_url = f"http://127.0.0.1:{prefect.port}"
    mlflow_url = f"http://127.0.0.1:{mlflow.port}"
    api = f"{prefect_url}/api"
    tracking = f"sqlite:///{store}"
    started: list[Process] = []
    try:
        prefect.wait_http(f"{api}/health", 180)
        raw = os.environ.get("SHAPPRUNE_UI_TARGETS", "sample_masks")
        targets = None if raw == "all" else raw.split(",")
        serve = Process(
            "serve",
            [sys.executable, "-m", "flows.pipeline", "--serve", "--root", str(ui_project)],
            ui_project,
            clean_env(
                PREFECT_API_URL=api,
                PREFECT_HOME=str(logs / "client-home"),
                PREFECT_RUNNER_POLL_FREQUENCY="1",
                MLFLOW_TRACKING_URI=tracking,
            ),
            logs,
        )
        started.append(serve)
        mlflow.wait_http(f"{mlflow_url}/health", 180)  # its store exists before the stages write to it
        deployment = None
        deadline = time.monotonic() + 180
        while deployment is None:
            resp = api_call("GET", f"{api}/deployments/name/{DEPLOYMENT}")
            if resp.status_code == 200:
                deployment = resp.json()
            elif serve.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"deployment {DEPLOYMENT} never appeared:\n{serve.tail()}")
            else:
                time.sleep(0.5)
        # what the UI's "Run" button does: a flow run of the deployment, parameters from the run form;
        # the idempotency key makes a retried request (the server busy) return the same run, never a second
        resp = api_call(
            "POST",
            f"{api}/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"targets": targets}, "idempotency_key": f"ui-test-{os.getpid()}"},
        )
        resp.raise_for_status()
        run_id = resp.json()["id"]
        deadline = time.monotonic() + (900 if targets is None else 300)
        while True:
            flow_run = api_call("GET", f"{api}/flow_runs/{run_id}").json()
            state = (flow_run.get("state") or {}).get("type")
            if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert state == "COMPLETED", f"served flow run ended {state}:\n{serve.tail(6000)}"
        yield ServedRun(ui_project, prefect_url, mlflow_url, tracking, flow_run, targets, logs)
    finally:
        for proc in reversed(started):
            proc.stop()
