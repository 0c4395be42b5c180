"""`spark-submit jobs/*.py` on a real Spark standalone cluster (infra/spark-cluster.sh) gives the tables and the export a local run gives."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakecdp.cli import main as cli_main
from lakecdp.clock import FrozenClock
from lakecdp.config import load_settings
from lakecdp.generate import GeneratorSettings, write_dataset
from lakecdp.sandbox.webhook import WebhookServer
from tests.lakes import assert_same_pipeline_tables

pytestmark = [pytest.mark.integration, pytest.mark.extended]

REPO = Path(__file__).resolve().parents[2]
END = datetime(2026, 11, 1, tzinfo=UTC)
AS_OF = END + timedelta(hours=1)
# Ports of their own, so a cluster a developer left running on the defaults is not used by mistake.
PORT, UI_PORT = 7177, 8191
VENV_BIN = Path(sys.executable).parent


def cluster(command: str, state: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "LAKECDP_SPARK_PORT": str(PORT),
        "LAKECDP_SPARK_UI_PORT": str(UI_PORT),
        "LAKECDP_SPARK_CLUSTER_DIR": str(state),
        "VENV": str(VENV_BIN.parent),
    }
    return subprocess.run(["bash", str(REPO / "infra" / "spark-cluster.sh"), command], env=env, capture_output=True, text=True, timeout=180)


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


def submit(job: str, *args: str, master: str, env: dict[str, str] | None = None) -> str:
    env = {
        **os.environ,
        "LAKECDP__SPARK__MASTER": master,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "LAKECDP_CONF_DIR": str(REPO / "conf"),
        **(env or {}),
    }
    done = subprocess.run(["spark-submit", str(REPO / "jobs" / job), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{job}: {done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def webhook_env(url: str) -> dict[str, str]:
    """The webhook destination of conf/base/esp.yaml, enabled and pointed at a test receiver."""
    return {
        "LAKECDP__ESP__DESTINATIONS__WEBHOOK__ENABLED": "true",
        "LAKECDP__ESP__DESTINATIONS__WEBHOOK__URL": url,
        "LAKECDP__ESP__DESTINATIONS__WEBHOOK__SECRET_ENV": "LAKECDP_TEST_WEBHOOK_SECRET",
        "LAKECDP_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


WEBHOOK_SECRET = "cluster-test-webhook-secret"


def test_stream_train_score_and_export_on_the_cluster_equal_a_local_run(spark, spark_cluster, tmp_path, monkeypatch):
    from lakecdp.importer.customers import import_customers
    from lakecdp.lake import open_lake
    from lakecdp.stream import run_stream
    from models.registry import ModelRegistry
    from models.scoring import score_lake
    from models.settings import parse_model_settings
    from models.training import train_models

    settings = load_settings(REPO / "conf", env={})
    dataset = write_dataset(GeneratorSettings(customers=300, days=42, seed=7, end=END), tmp_path / "landing")
    source = str(dataset.files[0].parent)

    crm = tmp_path / "landing" / "crm" / "customers.csv"  # contacts and marketing opt-in: what the export needs
    local = open_lake(spark, settings.lake, root=str(tmp_path / "local"))
    import_customers(local, crm, clock=FrozenClock(AS_OF))
    run_stream(spark, local, settings, source=source, checkpoint=str(tmp_path / "local_ckpt"), clock=FrozenClock(AS_OF))
    model_settings = parse_model_settings(settings.models)
    train_models(local, model_settings, ModelRegistry(Path(local.root) / "_models"), clock=FrozenClock(AS_OF), as_of=AS_OF)
    score_lake(local, model_settings, ModelRegistry(Path(local.root) / "_models"), clock=FrozenClock(AS_OF), as_of=AS_OF)

    remote_root = str(tmp_path / "cluster")
    import_customers(open_lake(spark, settings.lake, root=remote_root), crm, clock=FrozenClock(AS_OF))
    submit(
        "stream_events.py", "--until-idle", "--lake", remote_root, "--source", source, "--as-of", AS_OF.isoformat(), master=spark_cluster
    )
    submit("train.py", "--lake", remote_root, "--as-of", AS_OF.isoformat(), master=spark_cluster)
    scored = submit("score.py", "--lake", remote_root, "--as-of", AS_OF.isoformat(), master=spark_cluster)
    assert "scored" in scored

    remote = open_lake(spark, settings.lake, root=remote_root)
    assert remote.read("events").count() > 10_000
    assert_same_pipeline_tables(remote, local)

    # Export: each lake to a webhook receiver of its own; both receive the same members.
    receivers = {name: WebhookServer(secret=WEBHOOK_SECRET, rate_limit=None).start() for name in ("local", "cluster")}
    try:
        for name, value in webhook_env(receivers["local"].url).items():
            monkeypatch.setenv(name, value)
        assert cli_main(["export", "run", "--lake", local.root, "--destination", "webhook"]) == 0
        sent = submit(
            "export.py", "--lake", remote_root, "--destination", "webhook", master=spark_cluster, env=webhook_env(receivers["cluster"].url)
        )
        assert "webhook" in sent
    finally:
        for receiver in receivers.values():
            receiver.stop()
    assert receivers["cluster"].members == receivers["local"].members
    assert sum(len(members) for members in receivers["local"].members.values()) > 0, "nobody was exported: the test compares nothing"
