"""Contact encryption in plain Python: data keys, sealed values, key sources (lakecdp.lake.crypto)."""

from __future__ import annotations

import stat

import pandas as pd
import pytest
from pydantic import ValidationError

from lakecdp.config.models import CustomerAttribute, EncryptionSettings
from lakecdp.lake.crypto import MARKER, ContactCipher, EncryptionKeyError, load_master_key, parse_key, plain_rows

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))
ADA, BOB = "pc_" + "a" * 32, "pc_" + "b" * 32


@pytest.fixture
def cipher() -> ContactCipher:
    return ContactCipher(MASTER, ["email", "first_name"])


def test_a_value_round_trips_under_its_customers_key_and_reads_as_ciphertext(cipher):
    key = cipher.unwrap(ADA, cipher.new_wrapped_key(ADA))
    sealed = cipher.encrypt(key, ADA, "email", "ada@example.com")
    assert sealed.startswith(MARKER) and "ada" not in sealed
    assert cipher.decrypt(key, ADA, "email", sealed) == "ada@example.com"
    assert cipher.encrypt(key, ADA, "email", "ada@example.com") != sealed, "a fresh nonce per value"


def test_sealing_is_idempotent_and_none_stays_none(cipher):
    key = cipher.unwrap(ADA, cipher.new_wrapped_key(ADA))
    sealed = cipher.encrypt(key, ADA, "email", "ada@example.com")
    assert cipher.encrypt(key, ADA, "email", sealed) == sealed, "a stored value passed back through a MERGE is not sealed twice"
    assert cipher.encrypt(key, ADA, "email", None) is None
    assert cipher.decrypt(key, ADA, "email", None) is None


def test_a_value_moved_to_another_customer_or_column_does_not_decrypt(cipher):
    wrapped = cipher.new_wrapped_key(ADA)
    key = cipher.unwrap(ADA, wrapped)
    sealed = cipher.encrypt(key, ADA, "email", "ada@example.com")
    with pytest.raises(EncryptionKeyError, match="first_name of pc_a"):
        cipher.decrypt(key, ADA, "first_name", sealed)
    with pytest.raises(EncryptionKeyError, match="master key is not the one"):
        cipher.unwrap(BOB, wrapped)  # Ada's wrapped key copied to Bob's row


def test_an_erased_key_reads_as_null_and_another_master_key_is_refused(cipher):
    wrapped = cipher.new_wrapped_key(ADA)
    sealed = cipher.encrypt(cipher.unwrap(ADA, wrapped), ADA, "email", "ada@example.com")
    assert cipher.decrypt(None, ADA, "email", sealed) is None
    with pytest.raises(EncryptionKeyError, match="Fix: set lake.encryption.master_key"):
        ContactCipher(OTHER_MASTER, ["email"]).unwrap(ADA, wrapped)
    assert cipher.fingerprint != ContactCipher(OTHER_MASTER, ["email"]).fingerprint


def test_a_frame_is_sealed_and_opened_row_by_row(cipher):
    keys = {ADA: cipher.new_wrapped_key(ADA), BOB: cipher.new_wrapped_key(BOB)}
    frame = pd.DataFrame(
        {
            "customer_id": [ADA, BOB, BOB],
            "email": ["ada@example.com", None, "bob@example.com"],
            "first_name": ["Ada", "Bob", None],
        }
    )
    sealed = cipher.transform_frame(frame, ["email", "first_name"], seal=True, keys={ADA: [keys[ADA]], BOB: [keys[BOB]]})
    assert all(v is None or v.startswith(MARKER) for v in [*sealed["email"], *sealed["first_name"]])
    # A racing writer stored a second key for Bob: reading tries each of his keys.
    with_lists = sealed.assign(wrapped_keys=[[keys[ADA]], sorted([keys[BOB], cipher.new_wrapped_key(BOB)])] + [[keys[BOB]]])
    opened = cipher.transform_frame(with_lists, ["email", "first_name"], seal=False)
    assert opened[["email", "first_name"]].to_dict("list") == frame[["email", "first_name"]].to_dict("list")
    rows = plain_rows(cipher, sealed.to_dict("records"), {ADA: [keys[ADA]]})
    assert [r["first_name"] for r in rows] == ["Ada", None, None], "Bob's key is gone from the map: his contacts read as null"
    with pytest.raises(EncryptionKeyError, match="no data key"):
        cipher.transform_frame(frame, ["email"], seal=True, keys={})


def test_key_sources(tmp_path, monkeypatch):
    key_hex = MASTER.hex()
    assert load_master_key("env:SHOP_KEY", env={"SHOP_KEY": key_hex}) == MASTER
    assert load_master_key("auto", env={"LAKECDP_MASTER_KEY": key_hex}) == MASTER
    (tmp_path / "mounted.key").write_text(key_hex + "\n")
    assert load_master_key(f"file:{tmp_path / 'mounted.key'}", env={}) == MASTER
    with pytest.raises(EncryptionKeyError, match=r"\$SHOP_KEY, which is not set"):
        load_master_key("env:SHOP_KEY", env={})
    with pytest.raises(EncryptionKeyError, match="does not exist"):
        load_master_key(f"file:{tmp_path / 'missing.key'}", env={})
    with pytest.raises(EncryptionKeyError, match="64 hex characters"):
        parse_key("not-a-key", "$X")


def test_auto_generates_one_private_key_file_for_the_embedded_default(tmp_path):
    env = {"LAKECDP_STATE_DIR": str(tmp_path / "state")}
    first = load_master_key("auto", env=env)
    path = tmp_path / "state" / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key("auto", env=env) == first, "the second process reads the same key"


def test_conf_names_a_key_source_never_a_key():
    assert EncryptionSettings(master_key="aws-secretsmanager:prod/lakecdp").master_key == "aws-secretsmanager:prod/lakecdp"
    with pytest.raises(ValidationError, match="a key never goes in conf"):
        EncryptionSettings(master_key=MASTER.hex())
    with pytest.raises(ValidationError, match="pii: true is for a string attribute"):
        CustomerAttribute(type="date", pii=True)
