"""Contact columns encrypted at rest on both engines, and crypto-shredding: after erasure a backup of
`customers` taken before it no longer yields the erased customer's contacts, while everyone else's
still decrypt. The master key also comes from a real Secrets Manager-compatible server (moto)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from lakecdp.config.models import EncryptionSettings, LakeSettings
from lakecdp.lake import open_lake
from lakecdp.lake.crypto import MARKER, EncryptionKeyError, open_contacts
from lakecdp.privacy.erasure import process_erasures, request_erasure
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, tzinfo=UTC)
PEOPLE = {
    "shop_ada": ("ada.lovelace@example.com", "Ada", "Lovelace", "+44 20 7946 0001"),
    "shop_bob": ("bob.hope@example.com", "Bob", "Hope", "+44 20 7946 0002"),
    "shop_cyd": (None, None, None, None),  # a CRM row without contacts gets no data key
}
OTHER_KEY = "00" * 32


def customer_rows(lake) -> list[dict]:
    return [
        {
            "customer_id": pid(external),
            "external_id": external,
            "email": email,
            "first_name": first,
            "last_name": last,
            "phone": phone,
            "country": "GB",
            "marketing_opt_in": True,
            "source": "crm",
            "updated_at": NOW,
        }
        for external, (email, first, last, phone) in PEOPLE.items()
    ]


def write_customers(spark, lake) -> None:
    schema = T.StructType([*lake.spec("customers").schema.fields, T.StructField("phone", T.StringType())])  # add() would change the spec
    lake.merge("customers", spark.createDataFrame(customer_rows(lake), schema))


def parquet_text(folder: Path) -> str:
    return " ".join(str(pq.read_table(p).to_pylist()) for p in folder.rglob("*.parquet"))


@pytest.mark.parametrize("engine", ["delta-spark", "delta-rs"])
def test_contacts_are_stored_encrypted_and_read_back_only_through_the_adapter(spark, tmp_path, engine):
    lake = open_lake(spark, LakeSettings(root=str(tmp_path / "lake"), engine=engine), pii_columns=["phone"])
    write_customers(spark, lake)
    stored = {r.external_id: r for r in lake.read("customers").collect()}
    files = parquet_text(tmp_path / "lake" / "customers")
    for email, first, last, phone in filter(lambda p: p[0], PEOPLE.values()):
        assert not any(value in files for value in (email, first, last, phone)), "no contact value in any data file"
    assert all(stored["shop_ada"][c].startswith(MARKER) for c in ("email", "first_name", "last_name", "phone"))
    assert (stored["shop_ada"].external_id, stored["shop_ada"].country) == ("shop_ada", "GB"), "other columns stay readable"
    assert lake.read("customer_keys").count() == 2

    # A MERGE of stored rows (an identify folding into them) keeps their ciphertext as it is.
    lake.merge("customers", lake.read("customers"))
    plain = {r.external_id: r for r in lake.with_plain_contacts(lake.read("customers")).collect()}
    assert {x: (r.email, r.first_name, r.last_name, r.phone) for x, r in plain.items()} == PEOPLE
    # The driver-side read (the trigger dispatcher's) opens them the same way, without Spark.
    ids = [pid(x) for x in PEOPLE]
    rows = {r["external_id"]: r for r in lake.contact_rows(ids, ["external_id", "email", "first_name", "last_name", "phone"])}
    assert {x: (r["email"], r["first_name"], r["last_name"], r["phone"]) for x, r in rows.items()} == PEOPLE


def test_erasure_shreds_the_key_so_an_old_backup_no_longer_names_the_customer(spark, tmp_path):
    lake = open_lake(spark, LakeSettings(root=str(tmp_path / "lake")), pii_columns=["phone"])
    write_customers(spark, lake)
    backup = tmp_path / "backup" / "customers"
    shutil.copytree(tmp_path / "lake" / "customers", backup)
    ada, bob = pid("shop_ada"), pid("shop_bob")
    wrapped = lake.read("customer_keys").filter(f"customer_id = '{ada}'").first().wrapped_key

    request_erasure(lake, ada, NOW)
    process_erasures(lake, None, NOW + timedelta(minutes=1))

    keys = lake.read("customer_keys")
    assert [r.customer_id for r in keys.collect()] == [bob]
    key_files = [p for p in (tmp_path / "lake" / "customer_keys").rglob("*") if p.is_file()]
    assert not any(wrapped.encode() in p.read_bytes() or wrapped in parquet_text(p.parent) for p in key_files), (
        "no old version keeps the key"
    )
    restored = spark.read.format("delta").load(str(backup))
    assert restored.filter(f"customer_id = '{ada}'").first().email.startswith(MARKER), "the backup still holds Ada's ciphertext"
    cipher = lake.cipher
    assert cipher is not None
    opened = {r.customer_id: r for r in open_contacts(cipher, restored, keys).collect()}
    assert (opened[ada].email, opened[ada].phone) == (None, None), "without her key nobody can read Ada's contacts"
    assert (opened[bob].email, opened[bob].first_name) == ("bob.hope@example.com", "Bob")


def test_a_lake_refuses_a_master_key_that_is_not_its_own(spark, tmp_path, monkeypatch):
    lake = open_lake(spark, LakeSettings(root=str(tmp_path / "lake")))
    write_customers(spark, lake)
    monkeypatch.setenv("SHOP_OTHER_KEY", OTHER_KEY)
    stranger = open_lake(spark, LakeSettings(root=str(tmp_path / "lake"), encryption=EncryptionSettings(master_key="env:SHOP_OTHER_KEY")))
    with pytest.raises(EncryptionKeyError, match="not the one the lake at .* was built with"):
        stranger.with_plain_contacts(stranger.read("customers")).collect()


@pytest.fixture
def secrets_manager(moto_server, monkeypatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)  # boto3's own variable: every client goes to moto
    return moto_server


def test_the_master_key_comes_from_a_secret_store(spark, tmp_path, secrets_manager):
    import boto3

    boto3.client("secretsmanager").create_secret(Name="shop/lakecdp-master", SecretString="ab" * 32)
    settings = LakeSettings(root=str(tmp_path / "lake"), encryption=EncryptionSettings(master_key="aws-secretsmanager:shop/lakecdp-master"))
    lake = open_lake(spark, settings)
    write_customers(spark, lake)
    assert lake.read("customers").filter("external_id = 'shop_bob'").first().email.startswith(MARKER)
    again = open_lake(spark, settings)  # another process: the same secret, the same lake key
    assert again.with_plain_contacts(again.read("customers")).filter("external_id = 'shop_bob'").first().email == "bob.hope@example.com"
