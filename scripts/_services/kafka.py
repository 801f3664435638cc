"""Kafka: one KRaft node (broker and controller), its jars resolved from Maven Central."""

# ruff: noqa: S603 - runs java and mvn
from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid

from . import probes
from .common import CACHE, HOST, LOGS, PORTS, ServiceError, find_exe, rotate, run_logged, say
from .server import Server

KAFKA_VERSION = "3.9.1"
SLF4J_VERSION = "1.7.36"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


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
