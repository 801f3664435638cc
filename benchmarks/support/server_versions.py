"""Versions of the servers a run talked to."""

from __future__ import annotations

from typing import Any

import asyncpg
import nats
from pymongo import AsyncMongoClient

from benchmarks.support.machine import kafka_version
from benchmarks.support.server_urls import Servers

__all__ = ["server_versions"]


async def _postgres(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _nats(url: str) -> str:
    client = await nats.connect(url)
    try:
        return str(client.connected_server_version).strip("<>").removeprefix("nats server v")
    finally:
        await client.close()


async def _mongodb(url: str) -> str:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    try:
        info = await client.admin.command("buildInfo")
    finally:
        await client.close()
    ferret = info.get("ferretdbVersion") or info.get("ferretdb", {}).get("version")
    return f"{info.get('version')}" + (f" (FerretDB {ferret})" if ferret else "")


async def server_versions(servers: Servers) -> dict[str, str]:
    """``{"PostgreSQL": ..., "Kafka": ..., "NATS": ..., "MongoDB": ...}``; errors as text."""
    found: dict[str, str] = {"Kafka": kafka_version()}
    probes = (
        ("PostgreSQL", _postgres(servers.postgres)),
        ("NATS", _nats(servers.nats)),
        ("MongoDB wire", _mongodb(servers.mongodb)),
    )
    for name, probe in probes:
        try:
            found[name] = await probe
        except Exception as exc:
            found[name] = f"unreachable ({type(exc).__name__})"
    return found
