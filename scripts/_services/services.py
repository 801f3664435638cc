#!/usr/bin/env python3
"""Local test servers for outboxkit, without Docker (standard library only).

    scripts/services up [SERVER...]     install what is missing, start, wait until each answers
    scripts/services down [SERVER...]   stop the servers this checkout started (pid files only)
    scripts/services status             each server up/down with its URL
    scripts/services env                `export OUTBOXKIT_TEST_*=...` lines for the tests
    scripts/services logs SERVER [-n N] tail of a server's log
    scripts/services clean              down, then delete the servers' data (keeps the caches)

SERVER is one of: postgres kafka nats mongodb.

Everything lives under .services/ in the repository (git-ignored): data, logs, pid files and
the caches (Kafka's jars from Maven Central, FerretDB built from the Go module proxy).
Servers listen on 127.0.0.1 only, on ports of the project's own: PostgreSQL 55432,
Kafka 59092 (KRaft controller 59093), NATS 54222 (monitoring 58222), FerretDB 57017.
If a port already answers with the right kind of server (say, `docker compose up`), `up`
uses it; if OUTBOXKIT_TEST_MONGODB_URL names another server, FerretDB is not started.
FerretDB keeps its data in the database `ferretdb` of that PostgreSQL (`up mongodb` starts
PostgreSQL too).
"""

# ruff: noqa: S603, S607 - runs the tools it installs (apt, mvn, go, java, servers)
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
import probes

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("OUTBOXKIT_SERVICES_DIR") or ROOT / ".services").resolve()
CACHE = STATE / "cache"
LOGS = STATE / "logs"
RUN = STATE / "run"

HOST = "127.0.0.1"
PORTS = {
    "postgres": 55432,
    "kafka": 59092,
    "kafka-controller": 59093,
    "nats": 54222,
    "nats-monitor": 58222,
    "mongodb": 57017,
}
KAFKA_VERSION = "3.9.1"
SLF4J_VERSION = "1.7.36"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, file=sys.stderr, flush=True)


class ServiceError(Exception):
    """A server could not be installed or started; carries the log to show."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


# --------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def pid_cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\x00", b" ")
            .decode(errors="replace")
        )
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def port_open(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        data = f.read().decode(errors="replace").splitlines()
    return "\n".join(data[-lines:])


def rotate(log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists() and log.stat().st_size:
        log.replace(log.with_name(log.name + ".1"))


def run_logged(
    cmd: list[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    what: str,
    **popen: Any,
) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        rc = subprocess.call(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            **popen,
        )
    if rc != 0:
        raise ServiceError(f"{what} failed (exit {rc}): {shlex.join(cmd)}", log)


def is_root() -> bool:
    return os.geteuid() == 0


# --------------------------------------------------------------------------- installing


def find_postgres_bin() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def find_exe(name: str, *extra: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in extra:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def apt_install(packages: list[str]) -> None:
    """apt-get install; `apt-get update` first only when the package lists don't know them."""
    if not packages:
        return
    sudo: list[str] = []
    if not is_root():
        if shutil.which("sudo") is None:
            raise ServiceError(
                f"missing packages, and not root: run `apt-get install -y {' '.join(packages)}`"
            )
        sudo = ["sudo", "-n"]
    log = LOGS / "apt.log"
    env = {**os.environ, **APT_ENV}
    say(f"installing Debian packages: {' '.join(packages)} (log: {log})")
    install = [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *packages]
    try:
        run_logged(install, log, env=env, what="apt-get install")
    except ServiceError:
        say("  package lists are missing or stale: apt-get update, then retry")
        run_logged([*sudo, "apt-get", "update"], log, env=env, what="apt-get update")
        run_logged(install, log, env=env, what="apt-get install")


# --------------------------------------------------------------------------- servers


class Server:
    name: ClassVar[str]
    env_var: ClassVar[str]
    port: ClassVar[int]
    start_timeout: ClassVar[float] = 60.0
    requires: ClassVar[tuple[str, ...]] = ()
    """Servers this one needs running (``up`` starts them too)."""

    def __init__(self) -> None:
        self.dir = STATE / self.name
        self.log = LOGS / f"{self.name}.log"
        self.pidfile = RUN / f"{self.name}.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- identity
    def url(self) -> str:
        raise NotImplementedError

    def external_url(self) -> str | None:
        """A URL given by the environment that replaces the local server (mongodb only)."""
        return None

    def marker(self) -> str:
        """A string that appears in the command line of our process and no one else's."""
        return str(self.dir)

    def running_pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        if pid and pid_alive(pid) and self.marker() in pid_cmdline(pid):
            return pid
        return None

    def probe(self, timeout: float = 3.0) -> tuple[bool, str]:
        raise NotImplementedError

    # -- lifecycle
    def apt_packages(self) -> list[str]:
        return []

    def install(self) -> None:
        """Build or fetch what apt does not provide (runs in a worker thread)."""

    def prepare(self) -> None:
        """Create data directories and configuration (every start)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def spawn_kwargs(self) -> dict[str, Any]:
        """Extra ``subprocess.Popen`` arguments: by default, run in the server's own folder."""
        return {"cwd": str(self.dir)}

    def start(self) -> None:
        rotate(self.log)
        self.prepare()
        RUN.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        with self.log.open("ab") as out:
            out.write(f"$ {shlex.join(cmd)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.spawn_kwargs(),
            )
        self.pidfile.write_text(f"{self.proc.pid}\n")

    def after_ready(self) -> None:
        """One-time setup once the server answers (e.g. create the database)."""

    def wait_ready(self, pid: int | None, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        detail = "no answer yet"
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with code {self.proc.returncode} while starting", self.log
                )
            if self.proc is None and pid is not None and not pid_alive(pid):
                raise ServiceError(f"{self.name} (pid {pid}) exited", self.log)
            ok, detail = self.probe(timeout=2.0)
            if ok:
                self.after_ready()
                return detail
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} did not answer within {timeout:.0f}s ({detail})", self.log
                )
            time.sleep(0.2)

    def stop_signal(self) -> int:
        return signal.SIGTERM

    def cleanup_after_stop(self) -> None:
        self.pidfile.unlink(missing_ok=True)

    def data_paths(self) -> list[Path]:
        return [self.dir]


def ensure_database(port: int, name: str) -> None:
    """Create the PostgreSQL database ``name`` (a constant of this file) if it is missing."""
    if not probes.pg_query(HOST, port, f"select 1 from pg_database where datname = '{name}'"):
        probes.pg_query(HOST, port, f"create database {name}")


class Postgres(Server):
    name = "postgres"
    env_var = "OUTBOXKIT_TEST_POSTGRES_URL"
    port = PORTS["postgres"]
    database = "outboxkit"

    @property
    def data(self) -> Path:
        return self.dir.resolve() / "data"

    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{self.database}"

    def marker(self) -> str:
        return str(self.data)

    def running_pid(self) -> int | None:
        # postgres keeps its own pid file; the first line is the postmaster's pid
        pid = read_pid(self.data / "postmaster.pid")
        if pid and pid_alive(pid) and self.marker() in pid_cmdline(pid):
            return pid
        return None

    def probe(self, timeout: float = 3.0) -> tuple[bool, str]:
        return probes.pg_probe(HOST, self.port, database="postgres", timeout=timeout)

    def apt_packages(self) -> list[str]:
        return [] if find_postgres_bin() else ["postgresql"]

    def _run_as(self) -> dict[str, Any]:
        if not is_root():
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": []}

    def _as_postgres_ok(self, path: Path) -> bool:
        if not is_root():
            return True
        return (
            subprocess.call(["test", "-x", str(path), "-a", "-w", str(path)], **self._run_as()) == 0
        )

    def prepare(self) -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise ServiceError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        if not self.dir.is_symlink():
            self.dir.mkdir(parents=True, exist_ok=True)
        if is_root() and not self.dir.is_symlink():
            # postgres refuses to run as root: the cluster belongs to the postgres user
            shutil.chown(self.dir, "postgres", "postgres")
            if not self._as_postgres_ok(self.dir):
                # a parent folder is closed to the postgres user: keep the cluster in a folder
                # it can reach, linked from .services/postgres
                if any(self.dir.iterdir()):
                    raise ServiceError(f"postgres: the postgres user cannot reach {self.dir}")
                key = hashlib.sha256(str(STATE).encode()).hexdigest()[:12]
                alt = Path("/var/lib/outboxkit-services") / key / "postgres"
                alt.mkdir(parents=True, exist_ok=True)
                shutil.chown(alt, "postgres", "postgres")
                self.dir.rmdir()
                self.dir.symlink_to(alt, target_is_directory=True)
                say(f"postgres: {STATE} is closed to the postgres user; cluster kept in {alt}")
        if not (self.data / "PG_VERSION").exists():
            if self.data.exists():
                shutil.rmtree(self.data)
            say(f"postgres: initdb {self.data}")
            run_logged(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                self.log,
                what="initdb",
                cwd=self.dir,
                **self._run_as(),
            )
        conf = self.data / "postgresql.conf"
        include = "include_if_exists = 'outboxkit.conf'"
        if include not in conf.read_text():
            with conf.open("a") as f:
                f.write(f"\n{include}\n")
        (self.data / "outboxkit.conf").write_text(
            "# written by scripts/services on every start: edit the script, not this file\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''\n"
            "wal_level = logical\n"
            "max_wal_senders = 10\n"
            "max_replication_slots = 10\n"
            "max_connections = 200\n"
            "shared_buffers = 128MB\n"
            "max_locks_per_transaction = 128\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n"
            "log_min_messages = warning\n"
            "log_connections = off\n"
            "logging_collector = off\n"
        )
        (self.data / "pg_hba.conf").write_text(
            "# written by scripts/services: trust on loopback only\n"
            "host    all          all  127.0.0.1/32  trust\n"
            "host    replication  all  127.0.0.1/32  trust\n"
        )
        if is_root():
            for name in ("outboxkit.conf", "pg_hba.conf"):
                shutil.chown(self.data / name, "postgres", "postgres")
        stale = read_pid(self.data / "postmaster.pid")
        if stale and not (pid_alive(stale) and self.marker() in pid_cmdline(stale)):
            (self.data / "postmaster.pid").unlink(missing_ok=True)

    def command(self) -> list[str]:
        bindir = find_postgres_bin()
        assert bindir is not None
        return [str(bindir / "postgres"), "-D", str(self.data)]

    def spawn_kwargs(self) -> dict[str, Any]:
        return {"cwd": str(self.data), **self._run_as()}

    def start(self) -> None:
        super().start()
        self.pidfile.unlink(missing_ok=True)  # postmaster.pid is the pid file

    def after_ready(self) -> None:
        ensure_database(self.port, self.database)
        ok, detail = probes.pg_probe(HOST, self.port, database=self.database)
        if not ok:
            raise ServiceError(f"postgres: database {self.database}: {detail}", self.log)
        wal = probes.pg_query(HOST, self.port, "show wal_level")[0][0]
        if wal != "logical":
            raise ServiceError(f"postgres: wal_level is {wal}, expected logical", self.log)

    def stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown

    def cleanup_after_stop(self) -> None:
        pass

    def data_paths(self) -> list[Path]:
        return [self.dir.resolve(), self.dir] if self.dir.is_symlink() else [self.dir]


class Kafka(Server):
    name = "kafka"
    env_var = "OUTBOXKIT_TEST_KAFKA_BOOTSTRAP"
    port = PORTS["kafka"]
    start_timeout = 180.0

    def __init__(self) -> None:
        super().__init__()
        self.libs_dir = CACHE / f"kafka-{KAFKA_VERSION}"
        self.libs = self.libs_dir / "libs"
        self.props = self.dir / "server.properties"

    def url(self) -> str:
        return f"{HOST}:{self.port}"

    def marker(self) -> str:
        return str(self.props)

    def probe(self, timeout: float = 3.0) -> tuple[bool, str]:
        return probes.kafka_probe(HOST, self.port, timeout=timeout)

    def java(self) -> str | None:
        return find_exe("java")

    def apt_packages(self) -> list[str]:
        pkgs = []
        java = self.java()
        if java is None or java_major(java) < 11:
            pkgs.append("openjdk-17-jre-headless")
        if not (self.libs_dir / ".complete").exists() and find_exe("mvn") is None:
            pkgs.append("maven")
        return pkgs

    def install(self) -> None:
        if (self.libs_dir / ".complete").exists():
            return
        mvn = find_exe("mvn")
        if mvn is None:
            raise ServiceError("maven (mvn) is not installed")
        log = LOGS / "kafka-install.log"
        rotate(log)
        artifact = f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}"
        say(f"kafka: resolving {artifact} from Maven Central (log: {log})")
        self.libs_dir.mkdir(parents=True, exist_ok=True)
        if self.libs.exists():
            shutil.rmtree(self.libs)
        (self.libs_dir / "pom.xml").write_text(KAFKA_POM)
        run_logged(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(self.libs_dir / "pom.xml"),
                f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            log,
            what="mvn dependency:copy-dependencies",
            cwd=self.libs_dir,
        )
        jars = {p.name for p in self.libs.glob("*.jar")}
        for needed in (
            f"kafka_2.13-{KAFKA_VERSION}.jar",
            f"kafka-server-{KAFKA_VERSION}.jar",
            f"kafka-tools-{KAFKA_VERSION}.jar",
            f"slf4j-reload4j-{SLF4J_VERSION}.jar",
        ):
            if needed not in jars:
                raise ServiceError(f"kafka: {needed} missing after Maven resolution", log)
        (self.libs_dir / ".complete").write_text(f"{KAFKA_VERSION}\n")

    def java_cmd(self, main: str, xmx: str, xms: str, *args: str) -> list[str]:
        java = self.java()
        if java is None:
            raise ServiceError("java is not installed")
        return [
            java,
            f"-Xmx{xmx}",
            f"-Xms{xms}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        (self.dir / "log4j.properties").write_text(KAFKA_LOG4J)
        self.props.write_text(
            KAFKA_PROPERTIES.format(
                data=data, host=HOST, port=self.port, controller_port=PORTS["kafka-controller"]
            )
        )
        if not (data / "meta.properties").exists():
            id_file = self.dir / "cluster-id"
            if not id_file.exists():
                while True:
                    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
                    if not cid.startswith("-"):
                        break
                id_file.write_text(cid + "\n")
            cid = id_file.read_text().strip()
            say(f"kafka: formatting KRaft storage (cluster id {cid})")
            run_logged(
                self.java_cmd(
                    "kafka.tools.StorageTool",
                    "256m",
                    "64m",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    cid,
                    "-c",
                    str(self.props),
                ),
                self.log,
                what="kafka storage format",
            )

    def command(self) -> list[str]:
        return self.java_cmd("kafka.Kafka", "512m", "512m", str(self.props))


class Nats(Server):
    name = "nats"
    env_var = "OUTBOXKIT_TEST_NATS_URL"
    port = PORTS["nats"]
    start_timeout = 30.0

    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def marker(self) -> str:
        return str(self.dir / "nats.conf")

    def probe(self, timeout: float = 3.0) -> tuple[bool, str]:
        return probes.nats_probe(HOST, self.port, timeout=timeout)

    def exe(self) -> str | None:
        return find_exe("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")

    def apt_packages(self) -> list[str]:
        return [] if self.exe() else ["nats-server"]

    def prepare(self) -> None:
        store = self.dir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        (self.dir / "nats.conf").write_text(
            "# written by scripts/services on every start\n"
            "server_name: outboxkit_test\n"
            f"listen: {HOST}:{self.port}\n"
            f"http: {HOST}:{PORTS['nats-monitor']}\n"
            "jetstream {\n"
            f'  store_dir: "{store}"\n'
            "  max_memory_store: 512MB\n"
            "  max_file_store: 8GB\n"
            "}\n"
        )

    def command(self) -> list[str]:
        exe = self.exe()
        if exe is None:
            raise ServiceError("nats-server is not installed")
        return [exe, "-c", str(self.dir / "nats.conf"), "-js"]


class FerretDB(Server):
    """FerretDB 1.x on its PostgreSQL backend, in the database ``ferretdb`` of the harness's
    PostgreSQL. That backend runs equality filters on any field inside PostgreSQL; the SQLite
    one pushes down only ``_id`` and decodes every document of the collection otherwise
    (claims and guarded acks were 4-40x slower on it)."""

    name = "mongodb"
    env_var = "OUTBOXKIT_TEST_MONGODB_URL"
    port = PORTS["mongodb"]
    requires = ("postgres",)
    database = "ferretdb"
    notice = (
        "mongodb: warning: FerretDB loses acknowledged writes when a relay updates a document "
        "while a writer does (an independent fault run lost 11 of 3,003 events, and 1 of 303 "
        "without any fault): use it for tests only, a MongoDB replica set for real data "
        "(docs/guarantees.md, Known limits)"
    )

    def __init__(self) -> None:
        super().__init__()
        self.dir = STATE / "ferretdb"
        self.bin_dir = CACHE / f"ferretdb-{FERRETDB_VERSION}"
        self.exe = self.bin_dir / "ferretdb"

    def url(self) -> str:
        return self.external_url() or f"mongodb://{HOST}:{self.port}/"

    def external_url(self) -> str | None:
        value = os.environ.get(self.env_var, "").strip()
        own = f"mongodb://{HOST}:{self.port}/"
        if value and value.rstrip("/") != own.rstrip("/"):
            return value
        return None

    def marker(self) -> str:
        return f"--state-dir={self.dir / 'state'}"

    def probe(self, timeout: float = 3.0) -> tuple[bool, str]:
        ext = self.external_url()
        if ext:
            return probes.probe_url("mongodb", ext, timeout=timeout)
        return probes.mongo_probe(HOST, self.port, timeout=timeout)

    def go(self) -> str | None:
        return find_exe("go", "/usr/local/go/bin/go", "/usr/lib/go/bin/go")

    def apt_packages(self) -> list[str]:
        if self.exe.exists() or self.go():
            return []
        return ["golang-go"]

    def install(self) -> None:
        """Build FerretDB from its module on the Go module proxy.

        `go install github.com/FerretDB/FerretDB/cmd/ferretdb@VERSION` does not work: the
        binary panics at start unless build/version/version.txt holds the version (the
        project's release tooling writes it), and `go install pkg@version` cannot add a file.
        So: `go mod download` the module, copy its source, write version.txt, `go build`.
        """
        if self.exe.exists():
            return
        go = self.go()
        if go is None:
            raise ServiceError("go is not installed")
        log = LOGS / "ferretdb-install.log"
        rotate(log)
        say(f"mongodb: building FerretDB {FERRETDB_VERSION} from the Go module proxy (log: {log})")
        env = {**os.environ, "GOFLAGS": "-buildvcs=false -mod=readonly", "CGO_ENABLED": "0"}
        env.pop("GOBIN", None)
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        download = [go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"]
        res = subprocess.run(download, capture_output=True, text=True, env=env, cwd=self.bin_dir)
        with log.open("a") as f:
            f.write(f"$ {shlex.join(download)}\n{res.stdout}{res.stderr}")
        if res.returncode != 0:
            raise ServiceError(f"go mod download failed (exit {res.returncode})", log)
        src_module = Path(json.loads(res.stdout)["Dir"])
        src = self.bin_dir / "src"
        if src.exists():
            shutil.rmtree(src)
        shutil.copytree(src_module, src, copy_function=shutil.copy)
        for p in [src, *src.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)
        (src / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
        (src / "build" / "version" / "package.txt").write_text("outboxkit-services\n")
        tmp = self.bin_dir / "ferretdb.tmp"
        run_logged(
            [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(tmp), "./cmd/ferretdb"],
            log,
            env=env,
            cwd=src,
            what="go build ferretdb",
        )
        tmp.replace(self.exe)
        shutil.rmtree(src)

    def prepare(self) -> None:
        (self.dir / "state").mkdir(parents=True, exist_ok=True)
        ensure_database(Postgres.port, self.database)

    def command(self) -> list[str]:
        return [
            str(self.exe),
            "--handler=postgresql",
            f"--postgresql-url=postgres://postgres@{HOST}:{Postgres.port}/{self.database}"
            "?pool_max_conns=100",
            self.marker(),
            f"--listen-addr={HOST}:{self.port}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=info",
        ]

    def spawn_kwargs(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRETDB_")}
        env["DO_NOT_TRACK"] = "1"
        return {**super().spawn_kwargs(), "env": env}


KAFKA_POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by scripts/services: the jars Kafka {KAFKA_VERSION} needs to run a KRaft node -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>outboxkit.services</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-server</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>{KAFKA_VERSION}</version>
      <exclusions>
        <!-- Kafka Connect (and its Jetty/Jersey) only serves the connect-plugin-path tool -->
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>{SLF4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""

KAFKA_PROPERTIES = """# written by scripts/services on every start: edit the script, not this file
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
message.max.bytes=8388608
replica.fetch.max.bytes=8388608
"""

KAFKA_LOG4J = """# written by scripts/services
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.storage.internals.log=WARN
log4j.logger.kafka.log=WARN
"""

SERVERS: dict[str, type[Server]] = {
    "postgres": Postgres,
    "kafka": Kafka,
    "nats": Nats,
    "mongodb": FerretDB,
}


# --------------------------------------------------------------------------- commands


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / ".lock").open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            say("waiting for another scripts/services run to finish ...")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def selected(names: list[str]) -> list[Server]:
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise SystemExit(
            f"unknown server(s): {' '.join(unknown)} (choose from {' '.join(SERVERS)})"
        )
    return [SERVERS[n]() for n in (names or list(SERVERS))]


def await_answer(required: Server, by: Server) -> None:
    """Wait until ``required`` answers (``by`` needs it to start)."""
    deadline = time.monotonic() + required.start_timeout
    while not (answer := required.probe(timeout=2.0))[0]:
        if time.monotonic() > deadline:
            raise ServiceError(f"{by.name} needs {required.name}: {answer[1]}", by.log)
        time.sleep(0.2)


def with_requirements(names: list[str]) -> list[str]:
    """``names`` and the servers they require, in the order of SERVERS (all when empty)."""
    if not names:
        return []
    wanted = set(names) | {r for n in names if n in SERVERS for r in SERVERS[n].requires}
    return [n for n in SERVERS if n in wanted] + [n for n in names if n not in SERVERS]


def cmd_up(names: list[str]) -> int:
    t0 = time.monotonic()
    servers = selected(with_requirements(names))
    results: dict[str, str] = {}
    failures: dict[str, ServiceError] = {}
    with state_lock():
        for d in (CACHE, LOGS, RUN):
            d.mkdir(parents=True, exist_ok=True)
        to_start: list[Server] = []
        running: dict[str, int] = {}
        for s in servers:
            if s.external_url():
                ok, detail = s.probe()
                if ok:
                    results[s.name] = f"external ({detail})"
                else:
                    failures[s.name] = ServiceError(
                        f"{s.env_var}={s.external_url()} does not answer: {detail}"
                    )
                continue
            pid = s.running_pid()
            if pid is not None:
                running[s.name] = pid
            elif port_open(s.port):
                ok, detail = s.probe()
                if ok:
                    results[s.name] = f"already running, not started by this checkout ({detail})"
                else:
                    failures[s.name] = ServiceError(
                        f"port {HOST}:{s.port} is taken by something that is not"
                        f" a {s.name} server: {detail}"
                    )
            else:
                to_start.append(s)

        packages = sorted({p for s in to_start for p in s.apt_packages()})
        try:
            apt_install(packages)
        except ServiceError as exc:
            for s in to_start:
                failures[s.name] = exc
            to_start = []

        def bring_up(s: Server) -> str:
            pid = running.get(s.name)
            if pid is None:
                started = time.monotonic()
                s.install()
                for name in s.requires:  # started by a sibling thread, or already running
                    await_answer(SERVERS[name](), s)
                say(f"{s.name}: starting")
                s.start()
                detail = s.wait_ready(None, s.start_timeout)
                return f"started in {time.monotonic() - started:.1f}s ({detail})"
            detail = s.wait_ready(pid, s.start_timeout)
            return f"already running, pid {pid} ({detail})"

        work = [s for s in servers if s in to_start or s.name in running]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(work))) as pool:
            futures = {s.name: pool.submit(bring_up, s) for s in work}
            for name, fut in futures.items():
                try:
                    results[name] = fut.result()
                except ServiceError as exc:
                    failures[name] = exc
                except Exception as exc:
                    failures[name] = ServiceError(
                        f"{type(exc).__name__}: {exc}", SERVERS[name]().log
                    )

    for s in servers:
        if s.name in results:
            print(f"{s.name:<9} up    {s.url():<48} {results[s.name]}")
            notice = getattr(s, "notice", None)
            if notice and not s.external_url():
                say(notice)
    for s in servers:
        if s.name in failures:
            print(f"{s.name:<9} FAILED {s.url():<47} {failures[s.name]}")
    for name, failure in failures.items():
        if failure.log is not None:
            print(
                f"\n---- {name}: last lines of {failure.log} ----\n{tail(failure.log)}\n----",
                file=sys.stderr,
            )
    if failures:
        print(f"error: {', '.join(failures)} failed to start", file=sys.stderr)
        return 1
    say(f'all up in {time.monotonic() - t0:.1f}s; use: eval "$(scripts/services env)"')
    return 0


def cmd_down(names: list[str]) -> int:
    servers = selected(names)
    with state_lock():
        stopping: list[tuple[Server, int]] = []
        for s in reversed(servers):
            pid = s.running_pid()
            if pid is None:
                print(f"{s.name:<9} not running (nothing of ours to stop)")
                s.cleanup_after_stop()
                continue
            os.kill(pid, s.stop_signal())
            stopping.append((s, pid))
        deadline = time.monotonic() + 60
        for s, pid in stopping:
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                say(f"{s.name}: pid {pid} still running after 60s, sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                end = time.monotonic() + 10
                while pid_alive(pid) and time.monotonic() < end:
                    time.sleep(0.1)
            s.cleanup_after_stop()
            print(f"{s.name:<9} stopped (pid {pid})")
    return 0


def cmd_status(names: list[str]) -> int:
    servers = selected(names)
    all_up = True
    for s in servers:
        pid = None if s.external_url() else s.running_pid()
        ok, detail = s.probe(timeout=2.0)
        if ok:
            who = (
                "external"
                if s.external_url()
                else (f"pid {pid}" if pid else "not started by this checkout")
            )
            print(f"{s.name:<9} up    {s.url():<48} {who}; {detail}")
        else:
            all_up = False
            state = f"not answering (pid {pid}): {detail}" if pid else "down"
            print(f"{s.name:<9} down  {s.url():<48} {state}")
    return 0 if all_up else 1


def cmd_env(names: list[str]) -> int:
    for s in selected(names):
        print(f"export {s.env_var}={shlex.quote(s.url())}")
    return 0


def cmd_logs(names: list[str], lines: int) -> int:
    for s in selected(names):
        print(f"==> {s.log} <==\n{tail(s.log, lines)}")
    return 0


def cmd_clean(names: list[str]) -> int:
    cmd_down(names)
    with state_lock():
        for s in selected(names):
            for p in s.data_paths():
                if p.is_symlink():
                    p.unlink()
                elif p.exists():
                    shutil.rmtree(p)
            s.pidfile.unlink(missing_ok=True)
            print(f"{s.name:<9} data removed")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status", "env", "clean"):
        p = sub.add_parser(name)
        p.add_argument("servers", nargs="*", metavar="SERVER")
    p = sub.add_parser("logs")
    p.add_argument("servers", nargs="*", metavar="SERVER")
    p.add_argument("-n", "--lines", type=int, default=60)
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[list[str]], int]] = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "env": cmd_env,
        "clean": cmd_clean,
    }
    if args.command == "logs":
        return cmd_logs(args.servers, args.lines)
    return commands[args.command](args.servers)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
