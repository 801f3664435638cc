"""TLS to PostgreSQL from the typed ``ssl_*`` settings, for the store, its LISTEN connection
and ``migrate``.

The test PostgreSQL speaks no TLS (the shared servers of ``scripts/services`` stay plain), so
TLS is terminated in front of it as PgBouncer or a cloud proxy would: :func:`tls_front`
answers PostgreSQL's ``SSLRequest``, completes the handshake with a certificate of a CA made
here with ``openssl``, and passes the plain protocol to the real server. It accepts nothing
but TLS, so every connection that works through it was encrypted and verified as configured.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from outboxkit_postgres import PostgresSettings, PostgresStore, PostgresWalStore
from outboxkit_postgres.listener import Listener
from outboxkit_postgres.tls import ssl_option

from outboxkit.errors import ConfigurationError, StoreUnavailableError
from tests.support.missing import missing
from tests.support.postgres import wal_outbox
from tests.unit.cli.conftest import RunCli

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _openssl() -> None:
    if shutil.which("openssl") is None:
        missing("these tests make their certificates with openssl: install it (Debian: openssl)")


SSL_REQUEST = struct.pack("!II", 8, 80877103)
KEY_PASSWORD = "s3cret-key-pass"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=folder)  # fmt: skip


def make_cert(folder: Path, ca: str, name: str, *extra: str, san: str = "") -> None:
    """``name.pem`` signed by ``ca`` and its key ``name.key`` (``extra``: key options)."""
    openssl("genpkey", "-algorithm", "RSA", "-out", f"{name}.key", *extra, cwd=folder)
    password = ["-passin", f"pass:{KEY_PASSWORD}"] if extra else []
    openssl("req", "-new", "-key", f"{name}.key", *password, "-subj", f"/CN={name}",
            "-out", f"{name}.csr", cwd=folder)  # fmt: skip
    (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n" if san else "")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=folder)  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem (signs server.pem for DNS:localhost only, and client.pem with an encrypted
    key) and other-ca.pem, which signed neither."""
    folder = tmp_path_factory.mktemp("tls")
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    make_cert(folder, "ca", "server", san="DNS:localhost")
    make_cert(folder, "ca", "client", "-aes256", "-pass", f"pass:{KEY_PASSWORD}")
    return folder


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def tls_front(
    upstream: str, certs: Path, *, client_ca: bool = False
) -> AsyncIterator[list[int]]:
    """A TLS-only listener on 127.0.0.1 in front of the PostgreSQL of ``upstream``; yields
    [port, handshakes completed]. ``client_ca``: also require a client certificate of ca.pem."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs / "ca.pem")
    target = urlsplit(upstream)
    state = [0, 0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(8) != SSL_REQUEST:
                return  # plain connections are refused
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(context)
            state[1] += 1
            up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state[0] = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()


def via(url: str, host: str, port: int) -> str:
    """``url`` with its host and port replaced."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{userinfo}@{host}:{port}").geturl()


async def use(settings: PostgresSettings) -> None:
    """migrate, open (pools), one status query and a LISTEN connection, then close."""
    store = PostgresStore(settings)
    try:
        await store.migrate()
        await store.open()
        assert (await store.status()).pending == 0
    finally:
        await store.close()
    listener = Listener(
        settings.dsn, "tls_test", settings.connect_timeout, ssl=ssl_option(settings)
    )
    try:
        await listener.wait(0.05)
        assert listener.connected, "the LISTEN connection did not come up over TLS"
    finally:
        await listener.close()


async def test_verify_full_with_the_right_ca(postgres_url: str, certs: Path, schema: str) -> None:
    async with tls_front(postgres_url, certs) as (port, *_):
        settings = PostgresSettings(
            dsn=via(postgres_url, "localhost", port),
            schema=schema,
            ssl_mode="verify-full",
            ssl_root_cert=str(certs / "ca.pem"),
        )
        await use(settings)


async def test_handshakes_are_counted(postgres_url: str, certs: Path, schema: str) -> None:
    async with tls_front(postgres_url, certs) as state:
        settings = PostgresSettings(
            dsn=via(postgres_url, "localhost", state[0]),
            schema=schema,
            ssl_root_cert=str(certs / "ca.pem"),  # no ssl_mode: verify-full
        )
        await use(settings)
        # migrate + 2 pools (main, leases) + LISTEN: all through the TLS front
        assert state[1] >= 4, state


async def test_the_wrong_ca_is_refused(postgres_url: str, certs: Path, schema: str) -> None:
    async with tls_front(postgres_url, certs) as (port, *_):
        store = PostgresStore(
            PostgresSettings(
                dsn=via(postgres_url, "localhost", port),
                schema=schema,
                ssl_mode="verify-ca",
                ssl_root_cert=str(certs / "other-ca.pem"),
            )
        )
        with pytest.raises(StoreUnavailableError, match="certificate did not verify") as caught:
            await store.migrate()
        assert "\n" not in str(caught.value)


async def test_verify_full_checks_the_host_verify_ca_does_not(
    postgres_url: str, certs: Path, schema: str
) -> None:
    async with tls_front(postgres_url, certs) as (port, *_):
        by_ip = via(postgres_url, "127.0.0.1", port)  # the certificate names localhost only
        ca = str(certs / "ca.pem")
        full = PostgresSettings(dsn=by_ip, schema=schema, ssl_mode="verify-full", ssl_root_cert=ca)
        with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1"):
            await PostgresStore(full).migrate()
        await use(
            PostgresSettings(dsn=by_ip, schema=schema, ssl_mode="verify-ca", ssl_root_cert=ca)
        )


async def test_client_certificate_with_an_encrypted_key(
    postgres_url: str, certs: Path, schema: str
) -> None:
    async with tls_front(postgres_url, certs, client_ca=True) as (port, *_):
        settings = PostgresSettings(
            dsn=via(postgres_url, "localhost", port),
            schema=schema,
            ssl_root_cert=str(certs / "ca.pem"),
            ssl_cert=str(certs / "client.pem"),
            ssl_key=str(certs / "client.key"),
            ssl_key_password=KEY_PASSWORD,
        )
        await use(settings)
        without = PostgresSettings(
            dsn=settings.dsn, schema=schema, ssl_root_cert=str(certs / "ca.pem")
        )
        with pytest.raises(StoreUnavailableError):
            await PostgresStore(without).migrate()


async def test_require_against_a_plain_server(postgres_url: str, schema: str) -> None:
    store = PostgresStore(PostgresSettings(dsn=postgres_url, schema=schema, ssl_mode="require"))
    with pytest.raises(StoreUnavailableError, match="does not accept TLS"):
        await store.migrate()


def test_files_are_checked(certs: Path, tmp_path: Path) -> None:
    missing = PostgresSettings(ssl_root_cert=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigurationError, match=r"ssl_root_cert .*nope.pem.* cannot be read"):
        ssl_option(missing)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="no usable PEM certificate"):
        ssl_option(PostgresSettings(ssl_root_cert=str(tmp_path / "junk.pem")))
    wrong_password = PostgresSettings(
        ssl_root_cert=str(certs / "ca.pem"),
        ssl_cert=str(certs / "client.pem"),
        ssl_key=str(certs / "client.key"),
        ssl_key_password="wrong",
    )
    with pytest.raises(ConfigurationError, match=r"ssl_cert .* cannot be loaded"):
        ssl_option(wrong_password)
    with pytest.raises(ConfigurationError, match="ssl_mode prefer does not use"):
        PostgresSettings(ssl_mode="prefer", ssl_root_cert=str(certs / "ca.pem"))


def test_cli_flags(run_cli: RunCli, postgres_url: str, tmp_path: Path) -> None:
    bad = run_cli("migrate", "--store", "pg", "--pg-dsn", postgres_url, "--pg-ssl-mode", "on")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "outboxkit: error: invalid value 'on' for --pg-ssl-mode: Invalid enum value 'on'; "
        "choose one of allow, disable, prefer, require, verify-ca, verify-full"
    ]
    nope = str(tmp_path / "nope.pem")
    missing = run_cli(
        "migrate", "--store", "pg", "--pg-dsn", postgres_url, "--pg-ssl-root-cert", nope
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"outboxkit: error: pg ssl_root_cert {nope!r} cannot be read (No such file or "
        "directory): give the path of a readable PEM file"
    ]


async def test_the_replication_stream_verifies_the_server_too(
    postgres_url: str, certs: Path
) -> None:
    """Log tailing's psycopg2 connection gets the same ssl_* settings (as libpq parameters):
    it streams through TLS with the right CA and refuses a server the CA did not sign."""
    async with wal_outbox(postgres_url) as schema, tls_front(postgres_url, certs) as state:
        for ca, works in (("ca.pem", True), ("other-ca.pem", False)):
            settings = PostgresSettings(
                dsn=via(postgres_url, "localhost", state[0]),
                schema=schema,
                mode="wal",
                ssl_mode="verify-full",
                ssl_root_cert=str(certs / ca),
            )
            stream = PostgresWalStore(settings).slot_stream()
            if works:
                await stream.open()
                stream.close()
            else:
                with pytest.raises(OSError, match="certificate verify failed"):
                    await stream.open()
        assert state[1] >= 1, "the stream did not go through TLS"
