"""Run ``outboxkit`` with its Kafka connections sent through a proxy (test plumbing).

Kafka clients connect to the address each broker advertises, so a proxy in front of the
bootstrap address alone would be bypassed after the first metadata answer. This launcher maps
the broker's address (``OKT_KAFKA_REDIRECT="127.0.0.1:59092=127.0.0.1:40001"``) wherever the
Kafka client opens a connection, then runs the real command line: the relay, the broker and
the wire protocol are the real ones, only the route goes through the proxy.
"""

from __future__ import annotations

import os
import sys

import aiokafka.client

from outboxkit.cli import main

_real_create_conn = aiokafka.client.create_conn
_source, _, _target = os.environ["OKT_KAFKA_REDIRECT"].partition("=")
_FROM = (_source.rsplit(":", 1)[0], int(_source.rsplit(":", 1)[1]))
_TO = (_target.rsplit(":", 1)[0], int(_target.rsplit(":", 1)[1]))


async def _create_conn(host: str, port: int, *args: object, **kwargs: object) -> object:
    if (host, port) == _FROM:
        host, port = _TO
    return await _real_create_conn(host, port, *args, **kwargs)


aiokafka.client.create_conn = _create_conn

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
