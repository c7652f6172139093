"""Fixtures: Debian's Prometheus tools installed once per session, a Pushgateway per module."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.monitoring.promstack import Daemon, ensure_debs, start_pushgateway


@pytest.fixture(scope="session")
def prometheus_debs() -> None:
    """Install prometheus and prometheus-pushgateway when missing (what a fresh CI machine needs)."""
    ensure_debs()


@pytest.fixture(scope="module")
def pushgateway(prometheus_debs, tmp_path_factory) -> Iterator[Daemon]:
    daemon = start_pushgateway(tmp_path_factory.mktemp("pushgateway"))
    yield daemon
    daemon.stop()
