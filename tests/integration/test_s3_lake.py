"""A lake on S3 (moto's server on 127.0.0.1): the stream, train and score give the tables a local lake gives, on both engines.

Spark reaches s3:// through Hadoop's S3A (lake tables with delta-spark, the stream's checkpoint);
delta-rs and Arrow through their own S3 clients, with the same `lake.storage_options`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import boto3
import httpx
import pytest

from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.generate import GeneratorSettings, write_dataset
from lakecdp.lake import open_lake
from lakecdp.stream import run_stream
from tests.lakes import assert_same_pipeline_tables

pytestmark = [pytest.mark.integration, pytest.mark.extended]

END = datetime(2026, 11, 1, tzinfo=UTC)
AS_OF = END + timedelta(hours=1)
BUCKET = "lakecdp-lake"
GENERATED = GeneratorSettings(customers=150, days=35, seed=11, end=END)


@pytest.fixture(scope="module")
def s3_options():
    # moto's server in a process of its own: delta-rs holds the GIL while it waits on S3, so a
    # server thread in this process could never answer it.
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server)
        boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        ).create_bucket(Bucket=BUCKET)
        # delta-rs style storage options; S3A gets the same endpoint and keys (lakecdp.lake.files.s3a_conf).
        yield {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, attempts: int = 200) -> None:
    """Poll until the server answers (a count of tries, not a clock)."""
    for _ in range(attempts):
        if server.poll() is not None:
            raise RuntimeError(f"moto's server exited with {server.returncode}")
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            return
        except httpx.TransportError:
            threading.Event().wait(0.05)
    raise RuntimeError(f"moto's server did not answer at {url}")


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3-landing")
    dataset = write_dataset(GENERATED, folder)
    return str(dataset.files[0].parent)


def _run(spark, settings, root: str, source: str, checkpoint: str):
    """Stream the landing zone into the lake at `root`, then train and score: the nightly path on a fresh lake."""
    from models.registry import registry_for
    from models.scoring import score_lake
    from models.settings import parse_model_settings
    from models.training import train_models

    lake = open_lake(spark, settings.lake, root=root)
    run_stream(spark, lake, settings, source=source, checkpoint=checkpoint, clock=FrozenClock(AS_OF))
    model_settings = parse_model_settings(settings.models)
    registry = registry_for(model_settings.registry_root, root)
    train_models(lake, model_settings, registry, clock=FrozenClock(AS_OF), as_of=AS_OF)
    score_lake(lake, model_settings, registry, clock=FrozenClock(AS_OF), as_of=AS_OF)
    return lake


@pytest.fixture(scope="module")
def local_lake(spark, landing, tmp_path_factory):
    folder = tmp_path_factory.mktemp("local-lake")
    settings = load_settings(overrides={"state": {"path": str(folder / "state.sqlite")}})
    return _run(spark, settings, str(folder / "lake"), landing, str(folder / "checkpoint"))


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_stream_train_and_score_on_an_s3_lake_equal_a_local_run(spark, s3_options, landing, local_lake, tmp_path, engine):
    root = f"s3://{BUCKET}/{engine}/lake"
    settings = load_settings(
        overrides={
            "lake": {"engine": engine, "storage_options": s3_options},
            "state": {"path": str(tmp_path / "state.sqlite")},  # the embedded state store is a local file
            "models": {"registry_root": str(tmp_path / "models")},  # the model registry is a local folder
        }
    )

    remote = _run(spark, settings, root, landing, f"{root}/_checkpoints/events")

    objects = boto3.client(
        "s3",
        endpoint_url=s3_options["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).list_objects_v2(Bucket=BUCKET, Prefix=f"{engine}/")
    keys = [o["Key"] for o in objects.get("Contents", [])]
    assert any("/events/_delta_log/" in k for k in keys) and any("/_checkpoints/events/commits/" in k for k in keys)
    assert remote.read("events").count() > 5_000
    assert_same_pipeline_tables(remote, local_lake)
