"""The stdout / JSON-lines publisher: the conformance suite plus its line format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from outboxkit.embedded.stdout.publisher import StdoutPublisher, plugin
from outboxkit.embedded.stdout.records import decode_line, payload_bytes
from outboxkit.embedded.stdout.settings import StdoutSettings
from outboxkit.errors import ConfigurationError
from outboxkit.message import HEADER_ID, Message
from outboxkit.plugins import PUBLISHER_GROUP
from outboxkit.protocols import Delivered
from outboxkit.testing import (
    Consume,
    PublisherConformance,
    ReceivedRecord,
    Refuse,
    make_message,
)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def out_path(tmp_path: Path) -> Path:
    return tmp_path / "published.jsonl"


@pytest.fixture
async def publisher(out_path: Path) -> AsyncIterator[StdoutPublisher]:
    publisher = StdoutPublisher(StdoutSettings(path=str(out_path)))
    await publisher.open()
    yield publisher
    await publisher.close()


@pytest.fixture
def destination() -> str:
    return "orders.events"


@pytest.fixture
def consume(out_path: Path) -> Consume:
    async def consume(destination: str, count: int, timeout: float) -> list[ReceivedRecord]:
        lines = [decode_line(raw) for raw in _lines(out_path)]
        return [
            ReceivedRecord(key=line.key, headers=line.headers, payload=payload_bytes(line))
            for line in lines
            if line.destination == destination
        ][:count]

    return consume


class TestStdoutPublisher(PublisherConformance):
    """Every publisher guarantee, against the JSON-lines file output."""

    @pytest.fixture
    def refuse(self) -> Refuse:
        pytest.skip("the stdout publisher refuses no message: every line is written")

    @pytest.fixture
    def unreachable_publisher(self, tmp_path: Path) -> StdoutPublisher:
        return StdoutPublisher(StdoutSettings(path=str(tmp_path / "no-such-dir" / "out.jsonl")))


@pytest.mark.anyio
async def test_line_format(out_path: Path) -> None:
    publisher = StdoutPublisher(StdoutSettings(path=str(out_path), template="{aggregate_type}.x"))
    await publisher.open()
    pretty = Message(
        aggregate_type="order", aggregate_id="o-1", event_type="e", payload=b'{\n "a": 1\n}'
    )
    binary = Message(
        aggregate_type="blob",
        aggregate_id="b-1",
        event_type="e",
        payload=b"\x00\xff",
        content_type="application/octet-stream",
    )
    assert await publisher.publish([make_message("o-1", 5), pretty, binary]) == [Delivered()] * 3
    await publisher.close()
    await publisher.close()

    first, second, third = (json.loads(line) for line in _lines(out_path))
    assert first["payload"] == {"aggregate": "o-1", "n": 5}
    assert first["payload_encoding"] == "json" and first["destination"] == "order.x"
    assert second["payload"] == {"a": 1}
    assert third["payload_encoding"] == "base64" and third["destination"] == "blob.x"
    assert payload_bytes(decode_line(_lines(out_path)[2])) == b"\x00\xff"
    assert first["headers"][HEADER_ID] == first["id"]


@pytest.mark.anyio
async def test_appends_to_existing_file(out_path: Path) -> None:
    for n in range(2):
        publisher = StdoutPublisher(StdoutSettings(path=str(out_path)))
        await publisher.open()
        await publisher.publish([make_message("o-2", n)])
        await publisher.close()
    assert len(_lines(out_path)) == 2


@pytest.mark.anyio
async def test_stdout_by_default(capfd: pytest.CaptureFixture[str]) -> None:
    publisher = StdoutPublisher()
    await publisher.open()
    message = make_message("o-3")
    await publisher.publish([message])
    await publisher.close()
    assert decode_line(capfd.readouterr().out).id == str(message.id)


def test_bad_template_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown fields"):
        StdoutPublisher(StdoutSettings(template="{tenant}.events"))


def test_plugin_is_registered() -> None:
    (entry_point,) = entry_points(group=PUBLISHER_GROUP, name="stdout")
    assert entry_point.load() is plugin
