"""``create_stream``: the configured stream is created at start if missing, on the real server."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import nats.js.errors
import pytest
from nats.js.client import JetStreamContext
from outboxkit_nats import NatsSettings, StreamNotFoundError

from outboxkit.errors import ConfigurationError
from outboxkit.protocols import Delivered
from outboxkit.testing import make_message
from tests.support.nats import PublisherFactory, Stream, read_stream

pytestmark = pytest.mark.anyio


@pytest.fixture
async def new_stream(js: JetStreamContext) -> AsyncIterator[Stream]:
    """Names of a stream that does not exist yet; deleted after the test if made."""
    token = uuid.uuid4().hex[:12]
    stream = Stream(name=f"OBKT_NEW_{token}", prefix=f"obkt.new.{token}")
    yield stream
    with contextlib.suppress(nats.js.errors.NotFoundError):  # never created
        await js.delete_stream(stream.name)


async def test_a_missing_stream_is_created_and_published_to(
    open_publisher: PublisherFactory, new_stream: Stream, js: JetStreamContext
) -> None:
    settings = {"stream": new_stream.name, "stream_subjects": [new_stream.wildcard]}
    publisher = await open_publisher(create_stream=True, **settings)
    messages = [make_message(f"a-{n}", n, topic=new_stream.subject()) for n in range(3)]

    assert await publisher.publish(messages) == [Delivered()] * 3
    # a second relay finds it there and leaves it alone
    second = await open_publisher(create_stream=True, **settings)
    assert await second.publish(messages[:1]) == [Delivered(duplicate=True)]

    info = await js.stream_info(new_stream.name)
    assert info.config.subjects == [new_stream.wildcard]
    assert len(await read_stream(js, new_stream.name, new_stream.wildcard)) == 3


async def test_subjects_another_stream_captures_fail_with_the_reason(
    open_publisher: PublisherFactory, stream: Stream, new_stream: Stream
) -> None:
    with pytest.raises(
        StreamNotFoundError, match=f"cannot create JetStream stream '{new_stream.name}'"
    ):
        await open_publisher(
            create_stream=True, stream=new_stream.name, stream_subjects=[stream.wildcard]
        )


@pytest.mark.parametrize("settings", [{}, {"stream": "ORDERS"}, {"stream_subjects": ["orders"]}])
def test_create_stream_needs_a_stream_and_its_subjects(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match="create_stream needs stream and stream_subjects"):
        NatsSettings(create_stream=True, **settings)  # type: ignore[arg-type]
