"""The demo's stand-ins for a retailer's world, all on 127.0.0.1 and stopped with the demo.

- ESPs: Mailchimp and Klaviyo contract servers (requests checked against their documented API;
  Klaviyo's against its OpenAPI files in ../shared/contracts), and an S3-compatible server (moto)
  for the file drop.
- The retailer's trigger endpoint (signed webhook).
- A conf dir: the user's conf plus `local/zz-demo.yaml` pointing the destinations at those servers,
  so the DAG tasks (which load settings from LAKECDP_CONF_DIR) see the same configuration.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lakecdp.config.loader import CONF_DIR_ENV

# Demo credentials: the local servers accept exactly these (never a real account's).
SECRETS = {
    "LAKECDP_WRITE_KEY": "demo-write-key",
    "LAKECDP_DEMO_MAILCHIMP_KEY": "0123456789abcdef0123456789abcdef-us1",
    "LAKECDP_DEMO_KLAVIYO_KEY": "pk_demo_klaviyo_0123456789",
    "LAKECDP_DEMO_AWS_KEY": "demo",
    "LAKECDP_DEMO_AWS_SECRET": "demo-secret",
    "LAKECDP_TRIGGER_WEBHOOK_SECRET": "demo-trigger-secret-0123456789",
    "LAKECDP_LINK_SECRET": "demo-link-secret-0123456789",
}
BUCKET = "lakecdp-demo-drop"
KLAVIYO_TRIGGER = "klaviyo_high_intent"
MAILCHIMP_LIST = "demo-audience"
# The segment scores drive: exported to Klaviyo and the file drop once lakecdp_score has run.
PREDICTIVE = {
    "name": "likely_buyers",
    "description": "top three purchase-intent deciles (lakecdp_score)",
    "rule": {"profile": "intent_decile", "op": "<=", "value": 3},
}
# Small enough to train in seconds on two cores; a 30-day lake still gives two training snapshots.
MODELS = {
    "label_window": "5d",
    "snapshot_step": "5d",
    "min_history": "7d",
    "train_snapshots": 2,
    "clustering": {"k_min": 3, "k_max": 5, "n_init": 2},
    "intent": {"cv_folds": 2, "logistic_c": [1.0], "gbm_learning_rate": [0.1], "gbm_max_leaf_nodes": [15], "gbm_max_iter": 60},
}


@dataclass
class World:
    servers: dict[str, Any] = field(default_factory=dict)  # name -> running server
    s3_url: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # destination -> why it is not in this demo

    @property
    def urls(self) -> dict[str, str]:
        urls = {name: server.url for name, server in self.servers.items()}
        if self.s3_url:
            urls["s3_drop"] = self.s3_url
        return urls


@contextmanager
def local_world() -> Iterator[World]:
    """Start the servers; stop them (by their handles) however the demo ends."""
    from lakecdp.sandbox import KlaviyoServer, MailchimpServer, TriggerReceiver
    from lakecdp.sandbox.openapi import CONTRACTS_DIR

    world = World()
    moto = None
    try:
        world.servers["mailchimp"] = MailchimpServer(api_key=SECRETS["LAKECDP_DEMO_MAILCHIMP_KEY"], list_id=MAILCHIMP_LIST).start()
        if (CONTRACTS_DIR / "klaviyo").is_dir():
            world.servers["klaviyo"] = KlaviyoServer(api_key=SECRETS["LAKECDP_DEMO_KLAVIYO_KEY"]).start()
        else:
            world.skipped["klaviyo"] = f"its OpenAPI contracts are not at {CONTRACTS_DIR / 'klaviyo'} (set LAKECDP_CONTRACTS_DIR)"
        world.servers["triggers"] = TriggerReceiver(secret=SECRETS["LAKECDP_TRIGGER_WEBHOOK_SECRET"]).start()
        moto = _start_s3()
        host, port = moto.get_host_and_port()
        world.s3_url = f"http://{host}:{port}"
        yield world
    finally:
        for server in world.servers.values():
            server.stop()
        if moto is not None:
            moto.stop()


def _start_s3():
    import boto3
    import httpx
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request at INFO
    moto.start()
    host, port = moto.get_host_and_port()
    httpx.post(f"http://{host}:{port}/moto-api/reset")  # one backend per process: start empty
    boto3.client(
        "s3",
        endpoint_url=f"http://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id=SECRETS["LAKECDP_DEMO_AWS_KEY"],
        aws_secret_access_key=SECRETS["LAKECDP_DEMO_AWS_SECRET"],
    ).create_bucket(Bucket=BUCKET)
    return moto


def destinations(world: World) -> dict[str, Any]:
    """esp.destinations for the running servers (the base file's destinations stay, disabled)."""
    quick = {"retry": {"base_delay": "50ms", "max_delay": "1s", "max_attempts": 4}, "poll_interval": "50ms"}
    chosen: dict[str, Any] = {
        "mailchimp": {
            "enabled": True,
            "base_url": world.urls["mailchimp"],
            "list_id": MAILCHIMP_LIST,
            "api_key_env": "LAKECDP_DEMO_MAILCHIMP_KEY",
            **quick,
            "segments": {
                "cart_abandoned_48h": {"tag": "lakecdp_cart_abandoned_48h"},
                "high_purchase_intent": {"tag": "lakecdp_high_purchase_intent"},
            },
        },
        "s3_drop": {
            "enabled": True,
            "bucket": BUCKET,
            "endpoint_url": world.urls["s3_drop"],
            "server_side_encryption": None,
            "access_key_id_env": "LAKECDP_DEMO_AWS_KEY",
            "secret_access_key_env": "LAKECDP_DEMO_AWS_SECRET",
            **quick,
            "segments": [PREDICTIVE["name"]],
        },
    }
    if "klaviyo" in world.urls:
        chosen["klaviyo"] = {
            "enabled": True,
            "base_url": world.urls["klaviyo"],
            "api_key_env": "LAKECDP_DEMO_KLAVIYO_KEY",
            **quick,
            "segments": {"cart_abandoned_48h": {"list_id": "LDEMO1"}, PREDICTIVE["name"]: {"list_id": "LDEMO2"}},
        }
    return chosen


def write_conf(folder: Path, source: Path, *, world: World, lake_root: str, landing_root: str, segments: list[dict[str, Any]]) -> Path:
    """`source` (a conf dir) copied to `folder`, plus local/zz-demo.yaml: this lake, the local servers, small models."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source / "base", folder / "base")
    if (source / "local").is_dir():
        shutil.copytree(source / "local", folder / "local")
    (folder / "local").mkdir(exist_ok=True)
    segments = [dict(s) for s in segments]
    if all(s["name"] != PREDICTIVE["name"] for s in segments):
        segments.append(PREDICTIVE)
    triggers: dict[str, Any] = {"cart_webhook": {"url": f"{world.urls['triggers']}/hooks/cart-abandoned"}}
    if "klaviyo" in world.urls:
        # High intent starts a Klaviyo flow through its Events API (validated against Klaviyo's contract).
        from lakecdp.triggers.settings import sandbox_trigger_destination

        triggers[KLAVIYO_TRIGGER] = sandbox_trigger_destination(
            "klaviyo_event", world.urls["klaviyo"], metric="High Purchase Intent", api_key_env="LAKECDP_DEMO_KLAVIYO_KEY"
        )
        for segment in segments:
            if segment["name"] == "high_purchase_intent" and "trigger" not in segment:
                segment["trigger"] = {"destination": KLAVIYO_TRIGGER, "delay": "0m", "frequency_cap": {"max": 1, "per": "7d"}}
    overlay = {
        "lake": {"root": lake_root},
        "landing": {"root": landing_root},
        "stream": {"max_files_per_trigger": 16},  # the daily history files in a few micro-batches, as a backfill runs
        "segments": segments,
        "models": MODELS,
        "esp": {"destinations": destinations(world)},
        "triggers": {"destinations": triggers},
    }
    (folder / "local" / "zz-demo.yaml").write_text(
        "# Written by `lakecdp demo`: its lake and the local stand-in servers (ports change every run).\n"
        + yaml.safe_dump(overlay, sort_keys=False)
    )
    return folder


@contextmanager
def demo_environment(conf_dir: Path, extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """LAKECDP_CONF_DIR and the demo credentials in os.environ (what the DAG tasks read), restored afterwards."""
    wanted = {CONF_DIR_ENV: str(conf_dir), **SECRETS, **(extra or {})}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
