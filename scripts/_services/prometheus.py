"""Prometheus: Debian's package, scraping what the tests put in its file_sd folder.

A test that wants a relay scraped writes ``targets/<name>.json`` (Prometheus' file service
discovery format) into the folder the running configuration names (read it from
``/api/v1/status/config``); Prometheus picks the file up within a second, scrapes it every
second, and the test queries ``/api/v1/query``. Deleting the file stops the scrape.
"""

from __future__ import annotations

from . import probes
from .common import HOST, PORTS, ServiceError, find_exe
from .server import Server

SCRAPE_INTERVAL = "1s"


class Prometheus(Server):
    name = "prometheus"
    env_var = "OUTBOXKIT_TEST_PROMETHEUS_URL"
    port = PORTS["prometheus"]
    start_timeout = 60.0

    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def marker(self) -> str:
        return str(self.dir / "prometheus.yml")

    def probe(self, timeout: float = 3.0) -> tuple[bool, str]:
        return probes.prometheus_probe(HOST, self.port, timeout=timeout)

    def exe(self) -> str | None:
        return find_exe("prometheus", "/usr/bin/prometheus")

    def apt_packages(self) -> list[str]:
        return [] if self.exe() else ["prometheus"]

    def prepare(self) -> None:
        targets = self.dir / "targets"
        targets.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        (self.dir / "prometheus.yml").write_text(
            "# written by scripts/services on every start\n"
            "global:\n"
            f"  scrape_interval: {SCRAPE_INTERVAL}\n"
            f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
            "scrape_configs:\n"
            "  - job_name: outboxkit\n"
            f"    scrape_timeout: {SCRAPE_INTERVAL}\n"
            "    file_sd_configs:\n"
            "      - files:\n"
            f"          - {targets}/*.json\n"
            "        refresh_interval: 1s\n"
        )

    def command(self) -> list[str]:
        exe = self.exe()
        if exe is None:
            raise ServiceError("prometheus is not installed")
        return [
            exe,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={HOST}:{self.port}",
            "--web.enable-lifecycle",
        ]
