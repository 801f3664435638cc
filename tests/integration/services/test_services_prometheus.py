"""Smoke test: Prometheus answers its HTTP API and scrapes a target a test drops into its
file_sd folder (here Prometheus itself, labelled with a fresh ``run``)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from outboxkit.testing import unique_name
from tests.support.observability import prometheus_targets_dir, prometheus_value


def test_prometheus_scrapes_a_file_sd_target(prometheus_url: str) -> None:
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/status/buildinfo", timeout=5) as r:
        version = json.loads(r.read())["data"]["version"]
    assert version.startswith("2."), version
    run = unique_name("smoke")
    target = prometheus_targets_dir(prometheus_url) / f"{run}.json"
    host = urllib.parse.urlsplit(prometheus_url).netloc
    target.write_text(json.dumps([{"targets": [host], "labels": {"run": run}}]))
    try:
        deadline = time.monotonic() + 30
        while prometheus_value(prometheus_url, f'up{{run="{run}"}}') != 1:
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus did not scrape the target of {target} within 30s")
            time.sleep(0.5)
    finally:
        target.unlink(missing_ok=True)
