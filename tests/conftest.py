"""Shared fixtures: one SparkSession per test session (start-up costs seconds)."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
# One pseudonym key for the whole run (and the CLI, stream and Airflow processes tests start).
os.environ.setdefault("LAKECDP_PSEUDONYM_KEY", "lakecdp-tests-pseudonym-key-not-a-secret")

DATASET_END = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def spark():
    from lakecdp.config.models import SparkSettings
    from lakecdp.spark import build_session

    # Delta's jars in every test session: delta-spark is the default engine, and the contract
    # tests run the delta-rs engine on the same session.
    session = build_session(SparkSettings(shuffle_partitions=2, driver_memory="2g"), delta_spark=True)
    yield session
    session.stop()


@pytest.fixture(params=["delta-rs", "delta-spark"])
def lake(request, spark, tmp_path):
    """A Lake in a temp folder, once per engine."""
    from lakecdp.config.models import LakeSettings
    from lakecdp.lake import open_lake

    return open_lake(spark, LakeSettings(engine=request.param), root=str(tmp_path / "lake"))
