"""Debian's real Prometheus and Pushgateway as subprocesses on free loopback ports, for tests.

`scripts/ensure-debs.sh` installs the packages when missing (a fresh CI machine); the daemons are
started by hand (never through systemd), with temporary storage, and stopped by the fixture that
started them. `PrometheusAPI` is the small HTTP API client the tests evaluate queries with.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from bench.processes import free_port

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "k8s" / "monitoring"
DEBS = ("prometheus", "prometheus-pushgateway")


def ensure_debs() -> None:
    subprocess.run([str(REPO / "scripts" / "ensure-debs.sh"), *DEBS], check=True)


@dataclass
class Daemon:
    """One started daemon: its URL, process and log file; stop() terminates and waits."""
    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(argv: list[str], url: str, ready_path: str, log: Path, timeout: float = 30.0) -> Daemon:
    handle = log.open("wb")
    proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT)
    daemon = Daemon(url, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url + ready_path, timeout=1).status_code == 200:
                return daemon
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    daemon.stop()
    raise RuntimeError(f"{argv[0]} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def start_pushgateway(workdir: Path) -> Daemon:
    port = free_port()
    argv = ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={workdir / 'pushgateway.data'}"]
    return _start(argv, f"http://127.0.0.1:{port}", "/-/ready", workdir / "pushgateway.log")


def project_config(serving_target: str, pushgateway_target: str, interval: str = "1s") -> dict:
    """The project's k8s/monitoring/prometheus.yml with only targets, intervals and rule path changed."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(MONITORING / name) for name in config["rule_files"]]
    targets = {"model-serving": serving_target, "pushgateway": pushgateway_target}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


def start_prometheus(workdir: Path, config: dict) -> Daemon:
    port = free_port()
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = ["prometheus", f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"]
    return _start(argv, f"http://127.0.0.1:{port}", "/-/ready", workdir / "prometheus.log")


class QueryError(AssertionError):
    """Prometheus refused a query (parse or execution error)."""


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params) -> dict:
        response = requests.get(self.url + path, params=params, timeout=30)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise QueryError(f"{path} {params}: HTTP {response.status_code}: "
                             f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} if at is None else {"query": expr, "time": at}
        data = self._get("/api/v1/query", **params)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)["result"]

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["activeTargets"]

    def rules(self) -> list[dict]:
        return [rule for group in self._get("/api/v1/rules")["groups"] for rule in group["rules"]]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict]:
        """Poll until the query returns at least one series (e.g. after the next scrape)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.25)
