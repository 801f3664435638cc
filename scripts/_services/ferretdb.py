"""FerretDB, the MongoDB-wire server: built from the Go module proxy, on PostgreSQL."""

# ruff: noqa: S603 - runs go
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from . import probes
from .common import CACHE, HOST, LOGS, PORTS, STATE, ServiceError, find_exe, rotate, run_logged, say
from .postgres import Postgres, ensure_database
from .server import Server

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"


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
