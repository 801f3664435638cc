"""The relay continues the writer's trace: writer span -> relay publish span -> consumer.

In process, with the OpenTelemetry SDK's in-memory exporter and a tracer provider of the
test's own (no global provider is set, so other tests stay untraced).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from outboxkit_kafka import KafkaPublisher, KafkaSettings
from outboxkit_postgres import PostgresOutbox, PostgresSettings, PostgresStore

from outboxkit.message import Message
from outboxkit.observability import ObservabilitySettings, RelayObserver
from outboxkit.observability.tracing import publish_tracer
from outboxkit.relay import ShardedRelay
from outboxkit.relay.settings import RelaySettings
from tests.support import eventually
from tests.support.kafka import fresh_topic
from tests.support.observability import TopicReader, pg_outbox
from tests.support.postgres import pg_connection

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.anyio
@pytest.mark.slow
async def test_writer_relay_consumer_share_one_trace(
    postgres_url: str, kafka_bootstrap: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    async with (
        pg_outbox(postgres_url, shards=2) as schema,
        fresh_topic(kafka_bootstrap, 3) as topic,
    ):
        token = context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            with tracer.start_as_current_span("place order") as writer_span:
                message = Message.create(
                    aggregate_type="order",
                    aggregate_id="o-1",
                    event_type="order.placed",
                    payload={"total": 3},
                    topic=topic,
                )
        finally:
            context.detach(token)
        assert message.headers["baggage"] == "tenant=acme"
        async with pg_connection(postgres_url) as conn, conn.transaction():
            await PostgresOutbox(schema=schema).add(conn, message)

        observer = RelayObserver(
            ObservabilitySettings(summary_interval=0), "pg", "kafka", tracer_provider=provider
        )
        store, publisher = observer.wrap(
            PostgresStore(PostgresSettings(dsn=postgres_url, schema=schema)),
            KafkaPublisher(KafkaSettings(bootstrap_servers=kafka_bootstrap)),
        )
        relay = ShardedRelay(
            store, publisher, RelaySettings(exit_when_idle=True, poll_interval=0.2, lease_ttl=3)
        )
        with anyio.fail_after(60):
            await observer.run(relay)
        reader = TopicReader(kafka_bootstrap, topic)
        async with anyio.create_task_group() as tg:
            await tg.start(reader.run)
            await eventually(lambda: reader.records, 30, "the message read")
            tg.cancel_scope.cancel()

    headers = {k: v.decode() for k, v in reader.records[0].headers}
    received = propagate.extract(headers)
    with tracer.start_as_current_span("handle order", context=received):
        pass
    assert baggage.get_baggage("tenant", received) == "acme"

    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"place order", f"publish {topic}", "handle order"}
    relay_span, consumer_span = spans[f"publish {topic}"], spans["handle order"]
    writer = writer_span.get_span_context()
    assert relay_span.context.trace_id == writer.trace_id
    assert relay_span.parent is not None and relay_span.parent.span_id == writer.span_id
    assert relay_span.kind == trace.SpanKind.PRODUCER
    assert relay_span.attributes["messaging.destination.name"] == topic
    assert relay_span.attributes["messaging.message.id"] == str(message.id)
    assert consumer_span.context.trace_id == writer.trace_id
    assert consumer_span.parent is not None
    assert consumer_span.parent.span_id == relay_span.context.span_id


def test_no_tracer_without_a_configured_provider() -> None:
    # opentelemetry is installed here, but no global provider was set
    assert publish_tracer("kafka") is None


def test_relay_runs_without_opentelemetry_and_never_imports_it(tmp_path: Path) -> None:
    """With OpenTelemetry made unimportable, observing a relay (wrap, publish) works and
    nothing tries to import it beyond a spec lookup."""
    script = tmp_path / "no_otel.py"
    script.write_text(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the extra were not installed\n"
        "import anyio\n"
        "from outboxkit.embedded.stdout.publisher import StdoutPublisher\n"
        "from outboxkit.message import Message\n"
        "from outboxkit.observability import RelayObserver\n"
        "from outboxkit.observability.tracing import otel_installed\n"
        "class Store:\n"
        "    shard_count = 1\n"
        "observer = RelayObserver()\n"
        "store, publisher = observer.wrap(Store(), StdoutPublisher())\n"
        "async def main():\n"
        "    await publisher.open()\n"
        "    m = Message.create(aggregate_type='a', aggregate_id='1', event_type='e')\n"
        "    print(await publisher.publish([m]), file=sys.stderr)\n"
        "anyio.run(main)\n"
        "print(otel_installed(), observer.instruments.lag_seconds.count,\n"
        "      [m for m in sys.modules if m.startswith('opentelemetry') and sys.modules[m]])\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False 1 []"
