"""Matching ESP opt-outs to customers (inline data), and the opt-out readers' pure parts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from pyspark.testing import assertDataFrameEqual

from lakecdp.export.adapters.braze import _braze_time
from lakecdp.export.adapters.klaviyo import _profile_opt_outs
from lakecdp.export.adapters.sfmc_soap import SoapFault, parse_retrieve, status_filter, system_time
from lakecdp.export.http import DestinationError
from lakecdp.export.unsubscribes import OPT_OUT_SCHEMA, match_opt_outs

CONTACTS = "customer_id string, external_id string, email string"
MATCHED = "key_kind string, key string, kind string, changed_at string, reason string, customer_id string, email_sha256 string"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def test_opt_outs_match_by_external_id_subscriber_hash_or_email_hash_of_the_normalized_address(spark):
    contacts = spark.createDataFrame(
        [
            ("p1", "c1", " Ada@Example.com "),  # matched by its normalized address
            ("p2", "c2", "grace@example.com"),
            ("p3", "c3", None),  # no address: matchable by id only, and no suppression hash
            ("p4", None, "not an address"),  # neither an id nor a valid address
            ("p5", "c5", "ada@example.com"),  # the same address as p1: both are named by it
        ],
        CONTACTS,
    )
    at = "2026-10-31T23:00:00+00:00"
    opt_outs = spark.createDataFrame(
        [
            ("email_sha256", sha256("ada@example.com"), "bounced", None, "Braze hard bounce"),
            ("subscriber_hash", md5("grace@example.com"), "unsubscribed", at, "Mailchimp unsubscribed"),
            ("external_id", "c3", "unsubscribed", at, "SFMC unsubscribed"),
            ("external_id", "c9", "unsubscribed", at, "SFMC unsubscribed"),  # nobody
            ("email_sha256", sha256("not an address"), "bounced", None, "Braze hard bounce"),  # invalid addresses hash to nothing
            ("external_id", None, "unsubscribed", None, "Klaviyo UNSUBSCRIBE"),  # a null key matches nobody
        ],
        OPT_OUT_SCHEMA,
    )
    expected = spark.createDataFrame(
        [
            ("email_sha256", sha256("ada@example.com"), "bounced", None, "Braze hard bounce", "p1", sha256("ada@example.com")),
            ("email_sha256", sha256("ada@example.com"), "bounced", None, "Braze hard bounce", "p5", sha256("ada@example.com")),
            ("subscriber_hash", md5("grace@example.com"), "unsubscribed", at, "Mailchimp unsubscribed", "p2", sha256("grace@example.com")),
            ("external_id", "c3", "unsubscribed", at, "SFMC unsubscribed", "p3", None),
        ],
        MATCHED,
    )
    assertDataFrameEqual(match_opt_outs(opt_outs, contacts), expected)


def test_klaviyo_suppressions_map_to_kinds_and_only_those_since_the_start_count():
    start = datetime(2026, 10, 1, tzinfo=UTC)
    attributes = {
        "external_id": "c1",
        "subscriptions": {
            "email": {
                "marketing": {
                    "suppression": [
                        {"reason": "UNSUBSCRIBE", "timestamp": "2026-10-31T12:00:00+00:00"},
                        {"reason": "HARD_BOUNCE", "timestamp": "2026-10-02T00:00:00+00:00"},
                        {"reason": "SPAM_COMPLAINT", "timestamp": "2026-09-01T00:00:00+00:00"},  # before the start
                        {"reason": "SOMETHING_NEW", "timestamp": "2026-10-31T12:00:00+00:00"},  # undocumented: ignored
                    ]
                }
            }
        },
    }
    found = [(o.key_kind, o.key, o.kind, o.reason) for o in _profile_opt_outs(attributes, start)]
    assert found == [("external_id", "c1", "unsubscribed", "Klaviyo UNSUBSCRIBE"), ("external_id", "c1", "bounced", "Klaviyo HARD_BOUNCE")]
    assert list(_profile_opt_outs({**attributes, "external_id": None}, start)) == []  # a form's profile: no id to match


def test_braze_times_in_both_documented_forms_and_a_clear_error_otherwise():
    expected = datetime(2016, 8, 25, 15, 24, 32, tzinfo=UTC)
    assert _braze_time("2016-08-25 15:24:32 +0000", "/email/hard_bounces", "braze") == expected
    assert _braze_time("2016-08-25T15:24:32Z", "/email/unsubscribes", "braze") == expected
    assert _braze_time(None, "/email/unsubscribes", "braze") is None
    with pytest.raises(DestinationError, match=r"braze: /email/unsubscribes returned a time Braze does not document: 'yesterday'"):
        _braze_time("yesterday", "/email/unsubscribes", "braze")


def test_sfmc_dates_are_system_time_and_the_since_filter_is_written_in_it():
    assert system_time("2026-10-31T18:00:00") == datetime(2026, 11, 1, tzinfo=UTC)  # CST, UTC-6
    assert system_time(None) is None
    xml = status_filter("Unsubscribed", datetime(2026, 11, 1, tzinfo=UTC))
    assert "<DateValue>2026-10-31T18:00:00</DateValue>" in xml and "<LogicalOperator>AND</LogicalOperator>" in xml


def test_sfmc_answers_faults_and_dtds():
    envelope = (
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<RetrieveResponseMsg xmlns="http://exacttarget.com/wsdl/partnerAPI"><OverallStatus>MoreDataAvailable</OverallStatus>'
        b"<RequestID>r1</RequestID><Results><SubscriberKey>c1</SubscriberKey><Status>Held</Status></Results>"
        b"</RetrieveResponseMsg></soap:Body></soap:Envelope>"
    )
    page = parse_retrieve(envelope)
    assert (page.status, page.request_id, page.results) == ("MoreDataAvailable", "r1", [{"SubscriberKey": "c1", "Status": "Held"}])
    fault = (
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>'
        b"<faultcode>q0:Security</faultcode><faultstring>Login Failed</faultstring></soap:Fault></soap:Body></soap:Envelope>"
    )
    with pytest.raises(SoapFault) as raised:
        parse_retrieve(fault)
    assert raised.value.is_auth
    with pytest.raises(ValueError, match="DTD"):
        parse_retrieve(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
    with pytest.raises(ValueError, match="not XML"):
        parse_retrieve(b"<html>502 Bad Gateway")
