"""An embedded Apache Kafka broker: one KRaft node (controller + broker) from the jars on Maven Central.

``install`` (run by scripts/setup.sh as ``python -m txmon.embedded install-kafka``) copies the pinned
``org.apache.kafka:kafka_2.13`` and its runtime dependencies into ``~/.cache/txmon/kafka/<version>/libs``
(``TXMON_KAFKA_HOME``) with Maven; ``KafkaBroker`` then formats a temp data dir and runs
``java -cp 'libs/*' kafka.Kafka`` — the classes that Kafka's own ``bin/kafka-storage.sh`` and
``bin/kafka-server-start.sh`` run — on free loopback ports.
The docker-compose file's ``apache/kafka`` image is the same version (a test keeps them in step).
"""

from __future__ import annotations

import base64
import functools
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import ClassVar

from txmon.core.settings import Settings
from txmon.embedded.service import HOST, Service, ServiceError, answers_metadata, free_port, log_tail

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"  # the log4j2 Kafka 4.1.1 itself uses; its slf4j binding is not a dependency of the jar
MIN_JAVA = 17
HEAP = ("-Xms256m", "-Xmx768m")  # Kafka's scripts default to 1 GiB; one test node needs far less

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>txmon</groupId><artifactId>embedded-kafka</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

# One node: every replication factor 1; few internal partitions, so a first group join or transaction
# coordinator lookup does not wait on 50 partitions being created; no initial rebalance delay. No topic is
# created by a client asking for it: a worker's metadata request after a broker restart made a 1-partition
# transactions topic, and the replay's markers then named 1 partition (txmon creates its topics itself).
SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""

LOG4J2_PROPERTIES = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def kafka_home(settings: Settings | None = None) -> Path:
    """Where the pinned version's jars live: TXMON_KAFKA_HOME, default ``~/.cache/txmon/kafka/<version>`` (not
    under TXMON_CACHE_DIR, which a run may point at a scratch folder)."""
    s = settings if settings is not None else Settings()
    return s.kafka_home or Path.home() / ".cache" / "txmon" / "kafka" / KAFKA_VERSION


def installed(home: Path) -> bool:
    return (home / "libs" / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar").is_file()


def java_version(java: str | None = None) -> int | None:
    """The major version of ``java`` (default: the one on PATH), None if there is none."""
    java = java or shutil.which("java")
    return None if java is None else _java_major(java)


@functools.cache  # `java -version` takes a JVM start; the answer does not change while txmon runs
def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if m is None:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def unavailable_reason(home: Path | None = None) -> str | None:
    """Why the embedded Kafka broker cannot run here (None when it can)."""
    version = java_version()
    if version is None:
        return "no java on PATH (Apache Kafka needs Java 17 or newer; apt-get install openjdk-17-jre-headless)"
    if version < MIN_JAVA:
        return f"java {version} is too old (Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer)"
    home = home or kafka_home()
    if not installed(home):
        return (f"Apache Kafka {KAFKA_VERSION} is not installed in {home} (run scripts/setup.sh, or "
                f"python -m txmon.embedded install-kafka)")
    return None


def install(home: Path | None = None) -> Path:
    """Copy Kafka's jars from Maven Central into ``home`` (skipped when present); ServiceError when Java or
    Maven is missing or Maven fails."""
    home = home or kafka_home()
    if installed(home):
        return home
    version = java_version()
    if version is None or version < MIN_JAVA:
        raise ServiceError(f"cannot install Apache Kafka: {unavailable_reason(home)}")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("cannot install Apache Kafka: no mvn on PATH (apt-get install maven)")
    home.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="txmon-kafka-install-", dir=home.parent) as tmp:
        (Path(tmp) / "pom.xml").write_text(POM)
        libs = Path(tmp) / "libs"
        cmd = [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
        result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise ServiceError(f"mvn could not fetch Apache Kafka {KAFKA_VERSION} (exit {result.returncode}):\n"
                               + (result.stdout + result.stderr)[-3000:])
        staged = Path(tmp) / KAFKA_VERSION
        staged.mkdir()
        libs.rename(staged / "libs")
        shutil.rmtree(home, ignore_errors=True)
        staged.rename(home)  # atomic: a half-copied install is never taken for a whole one
    return home


class KafkaBroker(Service):
    """A single-node KRaft Apache Kafka broker on 127.0.0.1, its data and log in a temp dir."""

    name = "kafka"
    label = f"Apache Kafka {KAFKA_VERSION}"
    # What its workers need that differs from the defaults: nothing (Faust's fetch wait is right on Kafka, which
    # answers a fetch as soon as data arrives; transactions make exactly-once the default).
    worker_settings: ClassVar[dict[str, object]] = {}
    start_timeout = 90.0  # the JVM and the first metadata commit take 3-10 s on a quiet machine

    def __init__(self, port: int | None = None, home: Path | None = None) -> None:
        super().__init__(port)
        self.home = home or kafka_home()
        self.controller_port = 0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _java(self) -> str:
        return shutil.which("java") or "java"

    def _binary(self) -> str:
        why = unavailable_reason(self.home)
        if why is not None:
            raise ServiceError(f"cannot start the embedded Apache Kafka broker: {why}; or set "
                               "TXMON_EMBEDDED_BROKER=tansu")
        return self._java()

    def _classpath(self) -> str:
        return str(self.home / "libs" / "*")

    def _prepare(self) -> None:
        assert self._tmp is not None
        self.controller_port = free_port()
        props = self._tmp / "server.properties"
        props.write_text(SERVER_PROPERTIES.format(host=HOST, port=self.port, controller_port=self.controller_port,
                                                  data=self._tmp / "data"))
        (self._tmp / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # "--cluster-id=ID" in one argument: a base64url id may start with "-", which "-t ID" reads as an option
        cmd = [self._java(), *self._jvm_options(), "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
               f"--cluster-id={cluster_id}", "-c", str(props)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise ServiceError(f"formatting the Kafka data dir failed (exit {result.returncode}):\n"
                               + (result.stdout + result.stderr)[-2000:])

    def _jvm_options(self) -> list[str]:
        assert self._tmp is not None
        return [*HEAP, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self._tmp / 'log4j2.properties'}"]

    def _args(self) -> list[str]:
        assert self._tmp is not None
        return [*self._jvm_options(), "-cp", self._classpath(), "kafka.Kafka", str(self._tmp / "server.properties")]

    def _log_tail(self, lines: int = 20) -> str:
        """The broker's first errors, then its last lines: a failed start logs its cause, then a long shutdown."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines() if self.log_path else []
        except OSError:
            text = []
        errors = [line for line in text if " ERROR " in line or line.startswith(("Exception", "Caused by"))][:3]
        return ("--- first errors ---\n" + "\n".join(errors) + "\n" if errors else "") + log_tail(self.log_path, lines)

    def _answers(self) -> bool:
        return answers_metadata(self.bootstrap)
