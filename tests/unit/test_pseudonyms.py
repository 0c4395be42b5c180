"""Where the pseudonym key comes from, and what a bad one does."""

from __future__ import annotations

import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from lakecdp.privacy.pseudonyms import KEY_ENV, KEY_FILE, PATTERN, Pseudonymizer, PseudonymKeyError, load_pseudonymizer


def test_the_environment_key_wins_over_the_key_file(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / KEY_FILE).write_text("file key that is long enough to be used\n")
    from_env = load_pseudonymizer(conf_dir=tmp_path, env={KEY_ENV: "environment key that is long enough"})
    from_file = load_pseudonymizer(conf_dir=tmp_path, env={})
    assert from_env.of("c1") == Pseudonymizer(b"environment key that is long enough").of("c1")
    assert from_file.of("c1") == Pseudonymizer(b"file key that is long enough to be used").of("c1")


def test_a_missing_key_file_is_generated_once_private_and_then_reused(tmp_path):
    first = load_pseudonymizer(conf_dir=tmp_path, env={})
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    assert load_pseudonymizer(conf_dir=tmp_path, env={}).of("c1") == first.of("c1")
    assert PATTERN.match(first.of("c1"))


def test_processes_starting_together_agree_on_one_generated_key(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        pseudonyms = set(pool.map(lambda _: load_pseudonymizer(conf_dir=tmp_path, env={}).of("c1"), range(16)))
    assert len(pseudonyms) == 1
    assert [p.name for p in (tmp_path / "local").iterdir()] == ["pseudonym.key"]  # no temp file left behind


@pytest.mark.parametrize("key", ["short", ""])
def test_a_short_or_empty_key_is_refused_with_the_fix(tmp_path, key):
    (tmp_path / "local").mkdir()
    (tmp_path / KEY_FILE).write_text(key)
    with pytest.raises(PseudonymKeyError, match="empty|at least 32"):
        load_pseudonymizer(conf_dir=tmp_path, env={})
    with pytest.raises(PseudonymKeyError, match="at least 32"):
        load_pseudonymizer(conf_dir=tmp_path, env={KEY_ENV: "short"})


def test_the_fingerprint_names_the_key_without_revealing_it():
    key = b"a key that is long enough for lakecdp"
    one, same, other = Pseudonymizer(key), Pseudonymizer(key), Pseudonymizer(key + b"!")
    assert one.fingerprint == same.fingerprint != other.fingerprint
    assert key.decode() not in one.fingerprint and len(one.fingerprint) == 16


def test_erasure_finds_raw_landing_lines_by_pseudonym_and_whole_ids_only(tmp_path):
    import json

    from lakecdp.privacy.erasure import _erase_from_landing

    pseudonyms = Pseudonymizer(b"a key that is long enough for lakecdp")
    erased = {pseudonyms.of("c1"), pseudonyms.of("device-9"), "c1", "c1@example.com"}
    lines = {
        "own": {"type": "track", "userId": "c1", "event": "A"},
        "device": {"type": "page", "anonymousId": "device-9"},  # only its pseudonym is known
        "alias": {"type": "alias", "userId": "x", "previousId": "device-9"},
        "email": {"type": "identify", "userId": "x2", "traits": {"email": "c1@example.com"}},
        "neighbour": {"type": "track", "userId": "c10", "event": "A"},  # c1 is a prefix: not theirs
        "other_device": {"type": "page", "anonymousId": "device-99"},
    }
    landing = tmp_path / "landing"
    landing.mkdir()
    text = "".join(json.dumps({**event, "messageId": name}) + "\n" for name, event in lines.items())
    (landing / "part.jsonl").write_text(text + '{"userId": "c1", "broken\n')
    assert _erase_from_landing(landing, erased, pseudonyms.of) == 5
    kept = (landing / "part.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["messageId"] for line in kept) == ["neighbour", "other_device"]


def test_a_new_admin_token_never_reads_as_a_command_line_option():
    from lakecdp.privacy.roles import new_token

    tokens = [new_token()[0] for _ in range(500)]  # unprefixed, about 8 of 500 would start with "-"
    assert not any(token.startswith("-") for token in tokens)
    assert len(set(tokens)) == 500
