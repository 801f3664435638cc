"""NATS: nats-server with JetStream, from Debian's package."""

from __future__ import annotations

from . import probes
from .common import HOST, PORTS, ServiceError, find_exe
from .server import Server


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
