"""Shared fixtures: one SparkSession per test session (start-up costs seconds)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
# One pseudonym key for the whole run (and the CLI, stream and Airflow processes tests start).
os.environ.setdefault("LAKECDP_PSEUDONYM_KEY", "lakecdp-tests-pseudonym-key-not-a-secret")
# The contact-encryption master key (64 hex characters) tests run with: no key file in the home folder.
os.environ.setdefault("LAKECDP_MASTER_KEY", "6c616b656364702d74657374732d6d61737465722d6b65792d6e6f742d736563")

DATASET_END = datetime(2026, 11, 1, tzinfo=UTC)

# pytest-xdist's workers run under execnet, whose __main__ has neither __spec__ nor __file__. Importing
# pyspark.sql.connect (Great Expectations does) takes that for a doctest run and calls sys.exit(0)
# (pyspark/sql/connect/utils.py, check_dependencies), so every GX gate failed in a worker.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "pytest-xdist-worker"


@pytest.fixture(scope="session")
def spark():
    from lakecdp.config.models import SparkSettings
    from lakecdp.spark import build_session

    # Delta's jars in every test session: delta-spark is the default engine, and the contract
    # tests run the delta-rs engine on the same session. S3A too: a test runs a lake on S3; and
    # Spark's Kafka source: a test streams from a Kafka topic.
    # 3 GB: in local mode the driver's heap also holds every cached block; at 2 GB, a broadcast
    # late in the suite ran out of memory (test_triggers, after the S3 lake's three full runs).
    # No generated Java: on the tests' tiny tables, generating and compiling code per query costs more than
    # it saves. Three integration modules (timers, export run, profile history) took 177-179 s this way
    # against 203-205 s with Spark's defaults; either switch alone gave 201-204 s (2026-12-07, back to back).
    # factoryMode is a testing switch of Spark's (its own suites use it): projections built on the driver are
    # interpreted; tasks still pick their own. `lakecdp demo` (test_demo.py, a subprocess) keeps Spark's defaults.
    no_codegen = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}
    session = build_session(SparkSettings(shuffle_partitions=2, driver_memory="3g", conf=no_codegen), delta_spark=True, s3=True, kafka=True)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def demo_world(spark, tmp_path_factory) -> Path:
    """`lakecdp demo` up to its stream step, built once (tests/worlds.py): copy it before changing it."""
    from tests.worlds import build_demo_world

    return build_demo_world(tmp_path_factory.mktemp("demo-world"))


@pytest.fixture(autouse=True, scope="module")
def _release_cached_data(request):
    """Each test module starts with nothing cached by the ones before it (they share one driver heap)."""
    yield
    if "spark" in request.fixturenames:
        request.getfixturevalue("spark").catalog.clearCache()


@pytest.fixture(params=["delta-rs", "delta-spark"])
def lake(request, spark, tmp_path):
    """A Lake in a temp folder, once per engine."""
    from lakecdp.config.models import LakeSettings
    from lakecdp.lake import open_lake

    return open_lake(spark, LakeSettings(engine=request.param), root=str(tmp_path / "lake"))


# How long a started redis-server may take to answer PING.
REDIS_START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on 127.0.0.1 for the whole session, stopped by its process id."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: the Redis store tests need a real server. Fix: apt-get install redis-server")
    port = _free_port()
    log = tmp_path_factory.mktemp("redis") / "redis.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode} on port {port}:\n{log.read_text()}")
            try:
                client = redis.Redis(host="127.0.0.1", port=port)
                try:
                    if client.ping():
                        break
                finally:
                    client.close()
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not answer PING within {REDIS_START_TIMEOUT_S}s:\n{log.read_text()}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# How long infra/kafka.sh may take to start a broker, resolving its jars on a new machine included.
KAFKA_START_TIMEOUT_S = 300


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """A real single-node Kafka broker (KRaft) on 127.0.0.1 for the whole session, by infra/kafka.sh."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "infra" / "kafka.sh"
    port = _free_port()
    env = {
        **os.environ,
        "LAKECDP_KAFKA_DIR": str(tmp_path_factory.mktemp("kafka")),
        "LAKECDP_KAFKA_PORT": str(port),
        "LAKECDP_KAFKA_CONTROLLER_PORT": str(_free_port()),
    }
    started = subprocess.run([str(script), "start"], env=env, capture_output=True, text=True, timeout=KAFKA_START_TIMEOUT_S)
    if started.returncode != 0:
        pytest.fail(f"infra/kafka.sh start failed:\n{started.stdout}\n{started.stderr}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(script), "stop"], env=env, capture_output=True, timeout=60)


@pytest.fixture
def moto_server(monkeypatch):
    """A real AWS-compatible server (moto) on 127.0.0.1, started empty, with test credentials in the environment."""
    import httpx
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    httpx.post(f"{url}/moto-api/reset")  # moto keeps one backend per process: start empty
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    try:
        yield url
    finally:
        server.stop()
