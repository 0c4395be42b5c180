"""Standard Webhooks signatures (lakecdp.webhooks), as the spec at standardwebhooks.com defines them."""

from __future__ import annotations

import base64
import hashlib
import hmac

from lakecdp.webhooks import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers, signing_key, verify

BODY = b'{"trigger_id":"t1"}'
KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def test_the_signature_is_base64_hmac_sha256_of_id_timestamp_and_body_with_the_decoded_secret():
    headers = signed_headers(SECRET, "msg_1", 1_700_000_000, BODY)
    expected = base64.b64encode(hmac.new(KEY, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()).decode()
    assert headers == {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": f"v1,{expected}"}
    assert signing_key("plain-secret") == b"plain-secret"  # a secret not in whsec_ form is used as its bytes


def test_a_receiver_accepts_a_fresh_match_among_several_signatures_and_refuses_the_rest():
    headers = signed_headers(SECRET, "msg_1", 1000, BODY)
    assert verify(SECRET, headers, BODY, now=1100)
    rotated = {**headers, SIGNATURE_HEADER: f"v1,{base64.b64encode(b'x' * 32).decode()} {headers[SIGNATURE_HEADER]}"}
    assert verify(SECRET, rotated, BODY, now=1100)  # key rotation: one of several matches
    assert not verify(SECRET, headers, BODY + b" ", now=1100)  # body changed
    assert not verify("whsec_" + base64.b64encode(b"other").decode(), headers, BODY, now=1100)
    assert not verify(SECRET, headers, BODY, now=1000 + 301)  # replayed too late
    assert not verify(SECRET, headers, BODY, now=1000 - 301)  # from too far ahead
    assert not verify(SECRET, {**headers, ID_HEADER: "msg_2"}, BODY, now=1100)  # the id is signed
    assert not verify(SECRET, {k: v for k, v in headers.items() if k != TIMESTAMP_HEADER}, BODY, now=1100)


def test_the_readme_verification_snippet_accepts_our_signature_and_refuses_a_changed_body():
    from pathlib import Path
    from types import SimpleNamespace

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = next(block for block in readme.split("```python\n")[1:] if "def verified" in block).split("```")[0]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 - the README's own code, run as a reader would paste it
    namespace["time"] = SimpleNamespace(time=lambda: 1_000_100.0)  # its clock, frozen
    headers = signed_headers(SECRET, "trigger-1", 1_000_000, BODY)
    assert namespace["verified"](SECRET, headers, BODY)
    assert not namespace["verified"](SECRET, headers, BODY + b"x")
    assert namespace["verified"]("plain", signed_headers("plain", "t", 1_000_000, BODY), BODY)
    namespace["time"] = SimpleNamespace(time=lambda: 1_000_400.0)
    assert not namespace["verified"](SECRET, headers, BODY)
