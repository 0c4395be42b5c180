"""`spark-submit jobs/*.py` on a real Spark standalone cluster (infra/spark-cluster.sh) gives the tables a local run gives."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.generate import GeneratorSettings, write_dataset
from tests.lakes import assert_same_pipeline_tables

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
AS_OF = END + timedelta(hours=1)
# Ports of their own, so a cluster a developer left running on the defaults is not used by mistake.
PORT, UI_PORT = 7177, 8191
VENV_BIN = Path(sys.executable).parent


def cluster(command: str, state: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAKECDP_SPARK_PORT": str(PORT), "LAKECDP_SPARK_UI_PORT": str(UI_PORT),
           "LAKECDP_SPARK_CLUSTER_DIR": str(state), "VENV": str(VENV_BIN.parent)}
    return subprocess.run(["bash", str(REPO / "infra" / "spark-cluster.sh"), command], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("spark_cluster")
    started = cluster("start", state)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"spark://127.0.0.1:{PORT}"
    finally:
        stopped = cluster("stop", state)
        assert cluster("status", state).returncode == 1, stopped.stdout + stopped.stderr


def submit(job: str, *args: str, master: str) -> str:
    env = {**os.environ, "LAKECDP__SPARK__MASTER": master, "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "LAKECDP_CONF_DIR": str(REPO / "conf")}
    done = subprocess.run(["spark-submit", str(REPO / "jobs" / job), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{job}: {done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def test_stream_train_and_score_on_the_cluster_equal_a_local_run(spark, spark_cluster, tmp_path):
    from lakecdp.lake import open_lake
    from lakecdp.stream import run_stream
    from models.registry import ModelRegistry
    from models.scoring import score_lake
    from models.settings import parse_model_settings
    from models.training import train_models

    settings = load_settings(REPO / "conf", env={})
    dataset = write_dataset(GeneratorSettings(customers=300, days=42, seed=7, end=END), tmp_path / "landing")
    source = str(dataset.files[0].parent)

    local = open_lake(spark, settings.lake, root=str(tmp_path / "local"))
    run_stream(spark, local, settings, source=source, checkpoint=str(tmp_path / "local_ckpt"), clock=FrozenClock(AS_OF))
    model_settings = parse_model_settings(settings.models)
    train_models(local, model_settings, ModelRegistry(Path(local.root) / "_models"), clock=FrozenClock(AS_OF), as_of=AS_OF)
    score_lake(local, model_settings, ModelRegistry(Path(local.root) / "_models"), clock=FrozenClock(AS_OF), as_of=AS_OF)

    remote_root = str(tmp_path / "cluster")
    submit("stream_events.py", "--until-idle", "--lake", remote_root, "--source", source, "--as-of", AS_OF.isoformat(), master=spark_cluster)
    submit("train.py", "--lake", remote_root, "--as-of", AS_OF.isoformat(), master=spark_cluster)
    scored = submit("score.py", "--lake", remote_root, "--as-of", AS_OF.isoformat(), master=spark_cluster)
    assert "scored" in scored

    remote = open_lake(spark, settings.lake, root=remote_root)
    assert remote.read("events").count() > 10_000
    assert_same_pipeline_tables(remote, local)
