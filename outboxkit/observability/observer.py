"""Watching one relay: metrics endpoint, health checks, summary and exit log lines."""

from __future__ import annotations

import errno
import time
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import msgspec

from outboxkit.errors import ConfigurationError
from outboxkit.metrics import RelayMetrics
from outboxkit.observability.health import CheckResult, Verdict, liveness, readiness
from outboxkit.observability.instruments import Histogram, RelayInstruments
from outboxkit.observability.tracing import publish_tracer
from outboxkit.observability.wrappers import ObservedPublisher, ObservedStore
from outboxkit.protocols import Publisher, Store, StoreGauges
from outboxkit.relay.log import brief, log

if TYPE_CHECKING:
    from outboxkit.relay.sharded import ShardedRelay

__all__ = ["ObservabilitySettings", "RelayObserver"]


class ObservabilitySettings(msgspec.Struct, kw_only=True, frozen=True):
    """How a relay shows itself (CLI flags ``--http-port`` etc., env ``OUTBOXKIT_HTTP_PORT``,
    TOML table ``[observability]``)."""

    http_port: (
        Annotated[
            int,
            msgspec.Meta(
                ge=0,
                le=65535,
                description="serve /metrics, /healthz and /readyz on this port "
                "(default: off; needs the outboxkit[metrics] extra)",
            ),
        ]
        | None
    ) = None
    http_host: Annotated[str, msgspec.Meta(description="address the HTTP endpoints listen on")] = (
        "127.0.0.1"
    )
    check_interval: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="seconds between store and publisher checks (backlog gauges, /readyz)",
        ),
    ] = 5.0
    summary_interval: Annotated[
        float,
        msgspec.Meta(ge=0, description="seconds between summary log lines (0: none)"),
    ] = 60.0
    tracing: Annotated[
        bool,
        msgspec.Meta(
            description="trace each publish with OpenTelemetry when outboxkit[otel] is "
            "installed and a tracer provider is configured"
        ),
    ] = True


class RelayObserver:
    """Wraps a relay's store and publisher to measure them, then runs beside the relay.

    >>> observer = RelayObserver(ObservabilitySettings(http_port=9464), "pg", "kafka")
    >>> store, publisher = observer.wrap(store, publisher)
    >>> relay = ShardedRelay(store, publisher, settings)
    >>> await observer.run(relay)          # instead of relay.run()
    """

    def __init__(
        self,
        settings: ObservabilitySettings | None = None,
        store_name: str = "store",
        publisher_name: str = "publisher",
        *,
        tracer_provider: Any = None,
    ) -> None:
        self.settings = settings or ObservabilitySettings()
        self._tracer_provider = tracer_provider
        """An OpenTelemetry tracer provider (default: the global one, once configured)."""
        self.store_name = store_name
        self.publisher_name = publisher_name
        self.instruments = RelayInstruments()
        self.gauges: StoreGauges | None = None
        self.store_check = CheckResult()
        self.publisher_check = CheckResult()
        self._gauges_at: float | None = None
        self._store: Store | None = None
        self._publisher: Publisher | None = None
        self._relay: ShardedRelay | None = None
        self.port: int | None = None
        """The port the HTTP endpoints listen on (known once :meth:`run` started them)."""

    # -- wiring ---------------------------------------------------------------------------
    def wrap(self, store: Store, publisher: Publisher) -> tuple[Store, Publisher]:
        """The store and publisher to give the relay: the same, measured (and traced)."""
        self._store, self._publisher = store, publisher
        tracer = None
        if self.settings.tracing:
            tracer = publish_tracer(self.publisher_name or "outboxkit", self._tracer_provider)
        return (
            ObservedStore(store, self.instruments),
            ObservedPublisher(publisher, self.instruments, tracer),
        )

    @property
    def metrics(self) -> RelayMetrics:
        return self._relay.metrics if self._relay is not None else RelayMetrics()

    @property
    def instance_id(self) -> str:
        return self._relay.owner if self._relay is not None else ""

    def owned(self) -> int:
        return len(self._relay.shards) if self._relay is not None else 0

    def gauges_age(self) -> float:
        if self._gauges_at is None:
            return float("nan")
        return anyio.current_time() - self._gauges_at

    def live(self) -> Verdict:
        if self._relay is None:
            return Verdict(True, {"status": "starting"})
        return liveness(self._relay)

    def ready(self) -> Verdict:
        if self._relay is None or self._store is None:
            return Verdict(False, {"status": "not ready", "problems": ["not running"]})
        try:
            shard_count = self._store.shard_count
        except Exception:
            shard_count = 0
        stale = 2 * self.settings.check_interval + self._check_timeout() + 1
        return readiness(self._relay, shard_count, self.store_check, self.publisher_check, stale)

    def _check_timeout(self) -> float:
        return min(self.settings.check_interval, 3.0)

    # -- running --------------------------------------------------------------------------
    async def run(self, relay: ShardedRelay) -> None:
        """Run ``relay`` with the endpoints, checks and summary lines beside it; log one
        final line (published count, duration, exit reason) however it ends."""
        if self._store is None or self._publisher is None:
            raise RuntimeError("call RelayObserver.wrap() before run()")
        self._relay = relay
        listener = await self._listen()
        started = time.monotonic()
        outcome = "stopped"
        try:
            async with anyio.create_task_group() as tg:
                if listener is not None:
                    from outboxkit.observability.http import serve_http

                    tg.start_soon(serve_http, listener, self._routes())
                if listener is not None:
                    tg.start_soon(self._check_loop)
                if self.settings.summary_interval > 0:
                    tg.start_soon(self._summary_loop)
                await relay.run()
                tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        except BaseException as exc:
            outcome = f"failed ({brief(exc)})"
            raise
        finally:
            self._final_line(relay, time.monotonic() - started, outcome)

    async def _listen(self) -> Any:
        port = self.settings.http_port
        if port is None:
            return None
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "--http-port needs the prometheus-client package: "
                "pip install 'outboxkit[metrics]' (or leave --http-port unset)"
            ) from None
        host = self.settings.http_host
        try:
            listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        except OSError as exc:
            why = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            raise ConfigurationError(
                f"cannot serve HTTP on {host}:{port} ({why}): choose another "
                "--http-port / --http-host"
            ) from None
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
        log.info(
            "serving /metrics, /healthz and /readyz on http://%s:%d",
            host,
            self.port,
            extra={"http_host": host, "http_port": self.port},
        )
        return listener

    def _routes(self) -> Any:
        from outboxkit.observability.http import Routes
        from outboxkit.observability.prometheus import (
            CONTENT_TYPE_LATEST,
            exposition,
            relay_registry,
        )

        return Routes(
            metrics=exposition(relay_registry(self)),
            metrics_type=CONTENT_TYPE_LATEST,
            live=self.live,
            ready=self.ready,
        )

    async def _check_loop(self) -> None:
        """Read the backlog gauges and ping the publisher every ``check_interval`` seconds
        (without an HTTP port, only each summary line reads the gauges)."""
        interval = self.settings.check_interval
        while True:
            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._check_store)
                tg.start_soon(self._check_publisher)
            await anyio.sleep(max(0.0, started + interval - anyio.current_time()))

    async def _check_store(self) -> None:
        store = self._store
        assert store is not None
        timeout = self._check_timeout()
        try:
            with anyio.fail_after(timeout):
                gauges = await read_gauges(store)
        except TimeoutError:
            self.store_check.error = f"no answer within {timeout:g}s"
        except Exception as exc:
            self.store_check.error = brief(exc)
        else:
            self.gauges, self._gauges_at = gauges, anyio.current_time()
            self.store_check.ok_at, self.store_check.error = self._gauges_at, None

    async def _check_publisher(self) -> None:
        publisher = self._publisher
        ping = getattr(publisher, "ping", None)
        timeout = self._check_timeout()
        try:
            with anyio.fail_after(timeout):
                if ping is not None:
                    await ping()
        except TimeoutError:
            self.publisher_check.error = f"no answer within {timeout:g}s"
        except Exception as exc:
            self.publisher_check.error = brief(exc)
        else:
            self.publisher_check.ok_at, self.publisher_check.error = anyio.current_time(), None

    async def _summary_loop(self) -> None:
        interval = self.settings.summary_interval
        last_published = 0
        last_lag = _Snapshot(self.instruments.lag_seconds)
        while True:
            await anyio.sleep(interval)
            if self.settings.http_port is None:
                await self._check_store()
            metrics = self.metrics
            published = metrics.published - last_published
            last_published = metrics.published
            lag = last_lag.since()
            gauges = self.gauges
            fields: dict[str, Any] = {
                "instance": self.instance_id,
                "published": metrics.published,
                "published_interval": published,
                "rate": round(published / interval, 1),
                "lag_avg": None if lag is None else round(lag[0], 3),
                "lag_p99": None if lag is None else lag[1],
                "retried": metrics.retried,
                "dead_lettered": metrics.dead_lettered,
                "owned_shards": self.owned(),
                "pending": None if gauges is None else gauges.pending,
                "oldest_pending_age": None if gauges is None else gauges.oldest_pending_age,
            }
            log.info(
                "summary: published %d in the last %.0fs (%.1f/s, %d in all), lag %s, "
                "pending %s, retried %d, dead-lettered %d, %d shards",
                published,
                interval,
                fields["rate"],
                metrics.published,
                "-" if lag is None else f"avg {lag[0]:.3f}s p99 <= {lag[1]:g}s",
                "?"
                if gauges is None
                else f"{'~' if gauges.pending_estimated else ''}{gauges.pending}",
                metrics.retried,
                metrics.dead_lettered,
                fields["owned_shards"],
                extra=fields,
            )

    def _final_line(self, relay: ShardedRelay, elapsed: float, outcome: str) -> None:
        metrics = relay.metrics
        reason = (relay.stop_reason or "stopped") if outcome == "stopped" else outcome
        log.info(
            "relay %s exiting: published %d messages in %.1fs (%.1f/s), %d retried, "
            "%d dead-lettered; reason: %s",
            relay.owner,
            metrics.published,
            elapsed,
            metrics.published / elapsed if elapsed > 0 else 0.0,
            metrics.retried,
            metrics.dead_lettered,
            reason,
            extra={
                "instance": relay.owner,
                "published": metrics.published,
                "seconds": round(elapsed, 3),
                "retried": metrics.retried,
                "dead_lettered": metrics.dead_lettered,
                "reason": reason,
            },
        )


class _Snapshot:
    """The part of a histogram observed since the last call to :meth:`since`."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._counts = list(histogram.counts)
        self._sum = histogram.sum

    def since(self) -> tuple[float, float] | None:
        """``(average, p99 upper bound)`` of the values observed since the last call."""
        h = self._histogram
        counts = [now - before for now, before in zip(h.counts, self._counts, strict=True)]
        total, total_sum = sum(counts), h.sum - self._sum
        self._counts, self._sum = list(h.counts), h.sum
        if not total:
            return None
        delta = Histogram(h.bounds)
        delta.counts, delta.count = counts, total
        p99 = delta.quantile(0.99)
        assert p99 is not None
        return total_sum / total, p99


async def read_gauges(store: Store) -> StoreGauges:
    """The store's backlog gauges: its cheap ``gauges()`` if it has one, else its status."""
    gauges = getattr(store, "gauges", None)
    if gauges is not None:
        result: StoreGauges = await gauges()
        return result
    status = await store.status()
    return StoreGauges(
        pending=status.pending,
        oldest_pending_age=status.oldest_pending_age,
        dead_letters=status.dead_letters,
        blocked_aggregates=status.blocked_aggregates,
    )
