"""Content blocks: decision matrix, tokens and fallbacks, consent, sandboxed rendering, merge fields."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from lakecdp.config import ConfigError, load_settings
from lakecdp.content.engine import NO_CUSTOMER, ContentEngine, CustomerContext, discount_code
from lakecdp.content.settings import parse_content_settings
from lakecdp.content.targeting import parse_condition
from lakecdp.privacy.email_consent import HELD_OUT, NO_OPT_IN

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def raw_content():
    return load_settings(env={}).content


@pytest.fixture(scope="module")
def engine(raw_content):
    return ContentEngine(parse_content_settings(raw_content))


def customer(customer_id="cust_1", **overrides) -> CustomerContext:
    fields = dict(
        customer_id=customer_id,
        attributes={"first_name": "Ann", "country": "DE", "city": "Berlin"},
        profile={"frequency": 0, "last_category_viewed": None, "has_open_cart": False},
    )
    fields.update(overrides)
    return CustomerContext(**fields)


def with_block(raw, name, **block):
    changed = copy.deepcopy(raw)
    changed["blocks"][name] = block
    return changed


def test_frequent_buyers_get_the_loyalty_offer_everyone_else_the_generic_message(engine):
    frequent = engine.decide(customer(profile={"frequency": 3}), "cust_1", now=NOW)
    occasional = engine.decide(customer(profile={"frequency": 1}), "cust_1", now=NOW)
    unknown = engine.decide(customer(profile={"frequency": None}), "cust_1", now=NOW)
    assert frequent.blocks["offer"] == "loyalty_offer"
    assert occasional.blocks["offer"] == "generic_message"
    assert unknown.blocks["offer"] == "generic_message"  # a missing value never satisfies a comparison


def test_highest_priority_block_whose_target_holds_wins(engine):
    cart = ({"product_id": "p1", "name": "Trail Boot", "price": 80.0, "quantity": 1},)
    abandoner = customer(profile={"frequency": 3}, segments=frozenset({"cart_abandoned_48h"}), cart_items=cart)
    assert engine.decide(abandoner, "cust_1", now=NOW).blocks["offer"] == "urgency_cart"
    # the urgency block also needs the cart items token: without them the loyalty offer is next
    no_items = customer(profile={"frequency": 3}, segments=frozenset({"cart_abandoned_48h"}))
    assert engine.decide(no_items, "cust_1", now=NOW).blocks["offer"] == "loyalty_offer"


def test_tokens_fall_back_when_data_is_missing(engine):
    decision = engine.decide(customer(attributes={"first_name": "  "}, profile={}), "cust_1", now=NOW)
    assert decision.personalized
    assert decision.tokens["first_name"] == "there"
    assert decision.tokens["last_viewed_category"] == "new arrivals"
    assert decision.tokens["recommended_products"] == []
    assert decision.blocks == {"hero": "hero_generic", "offer": "generic_message", "products": "product_grid_bestsellers"}
    assert decision.tokens["discount_code"] == discount_code("cust_1", "VIP")


@pytest.mark.parametrize(
    "context, reason",
    [
        (customer(block_reason=NO_OPT_IN, profile={"frequency": 5, "last_category_viewed": "shoes"}), NO_OPT_IN),
        (None, NO_CUSTOMER),
    ],
)
def test_customers_without_consent_get_only_fallbacks(engine, context, reason):
    decision = engine.decide(context, "cust_1", now=NOW)
    assert not decision.personalized and decision.reason == reason
    assert decision.blocks == {"hero": "hero_generic", "offer": "generic_message", "products": "product_grid_bestsellers"}
    assert decision.tokens == engine.fallback_tokens()
    html = engine.render(decision)
    assert "Ann" not in html and "shoes" not in html and "Hi there" in html


def test_global_holdout_gets_generic_content(raw_content):
    class HoldEveryone:
        def in_global_holdout(self, customer_id):
            return True

        def assign(self, experiment, customer_id):
            return "global_holdout"

    engine = ContentEngine(parse_content_settings(raw_content), HoldEveryone())
    decision = engine.decide(customer(profile={"frequency": 4}), "cust_1", now=NOW)
    assert decision.reason == HELD_OUT and decision.blocks["offer"] == "generic_message"


def test_validity_window_and_channel(raw_content):
    raw = with_block(
        raw_content,
        "winter_sale",
        kind="urgency_discount",
        slot="offer",
        priority=99,
        valid_from="2026-12-01T00:00:00Z",
        valid_until="2027-01-01T00:00:00Z",
        template="<p>Sale {{ discount_code }}</p>",
    )
    raw = with_block(raw, "sms_only", kind="generic_message", slot="hero", priority=99, channels=["sms"], template="<p>sms</p>")
    engine = ContentEngine(parse_content_settings(raw))
    before = engine.decide(customer(), "cust_1", now=NOW)
    during = engine.decide(customer(), "cust_1", now=datetime(2026, 12, 24, tzinfo=UTC))
    after = engine.decide(customer(), "cust_1", now=datetime(2027, 1, 1, tzinfo=UTC))
    assert (before.blocks["offer"], during.blocks["offer"], after.blocks["offer"]) == ("generic_message", "winter_sale", "generic_message")
    assert during.blocks["hero"] == "hero_generic"  # an sms block never lands in an email


def test_rendered_email_is_escaped_table_layout_with_inline_css(engine):
    recs = ({"product_id": "prod_0001", "name": "<script>alert(1)</script>", "category": "shoes", "price": 84.99},)
    person = customer(
        attributes={"first_name": "<img src=x onerror=alert(1)>"}, profile={"last_category_viewed": "shoes"}, recommendations=recs
    )
    html = engine.render(engine.decide(person, "cust_1", now=NOW))
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x" in html
    assert 'role="presentation"' in html and "$84.99" in html
    # The stylesheet's rules are inlined; only the dark-mode @media block stays, in <head>.
    head, body = html.split("</head>", 1)
    assert "<style" not in body and head.count("<style") == 1
    assert "@media (prefers-color-scheme: dark)" in head and 'class="lc-text" style="margin: 0;' in body
    assert "https://shop.example.com/p/prod_0001" in html


def test_merge_fields_carry_block_ids_tokens_and_variants(raw_content):
    class Fixed:
        def in_global_holdout(self, customer_id):
            return False

        def assign(self, experiment, customer_id):
            return "personalized"

    raw = copy.deepcopy(raw_content)
    raw["experiments"] = {"personalized_content": "EXPCONTENT"}
    engine = ContentEngine(parse_content_settings(raw), Fixed())
    recs = tuple({"product_id": f"p{i}", "name": f"Item {i}", "category": "home", "price": 10.0} for i in range(6))
    fields = engine.merge_fields(engine.decide(customer(profile={"frequency": 2}, recommendations=recs), "cust_1", now=NOW))
    assert fields["BLK_OFFER"] == "loyalty_offer" and fields["BLK_GRID"] == "product_grid_recs"
    assert fields["FNAME"] == "Ann" and fields["RECS"] == "Item 0, Item 1, Item 2, Item 3"  # limit 4
    assert fields["EXPCONTENT"] == "personalized"
    assert all(isinstance(v, str) for v in fields.values())


@pytest.mark.parametrize(
    "template",
    [
        "{{ first_name.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__.__base__ }}",
        "{{ first_name.format.__globals__ }}",
    ],
)
def test_templates_cannot_reach_python_internals(raw_content, template):
    raw = with_block(raw_content, "evil", kind="generic_message", slot="offer", template=template)
    with pytest.raises(ConfigError, match="blocks.evil.template"):
        ContentEngine(parse_content_settings(raw))


@pytest.mark.parametrize("template", ["{% include '/etc/passwd' %}", "{% import 'os' as os %}"])
def test_templates_cannot_include_files(raw_content, template):
    raw = with_block(raw_content, "evil", kind="generic_message", slot="offer", template=template)
    with pytest.raises(ConfigError, match="blocks.evil.template"):
        ContentEngine(parse_content_settings(raw))


def test_undeclared_token_in_a_template_is_a_config_error(raw_content):
    raw = with_block(raw_content, "typo", kind="generic_message", slot="offer", template="Hi {{ frist_name }}")
    with pytest.raises(ConfigError, match=r"content.yaml: content.blocks.typo.template: uses \['frist_name'\]"):
        ContentEngine(parse_content_settings(raw))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda raw: raw["blocks"]["loyalty_offer"].update(target={"profile": "frequency", "op": "~=", "value": 2}), "op"),
        (lambda raw: raw["blocks"]["loyalty_offer"].update(target={"customer": "email", "op": "exists"}), "contact data"),
        (lambda raw: raw["blocks"]["loyalty_offer"].update(target={"python": "__import__('os')"}), "unknown condition keys"),
        (lambda raw: raw["slots"]["hero"].update(fallback="loyalty_offer"), "belongs to slot"),
        (lambda raw: raw["tokens"]["first_name"].update(source="customer.email"), "not available to templates"),
        (lambda raw: raw["tokens"]["first_name"].update(merge_field="first_name_field"), "merge fields"),
        (lambda raw: raw["blocks"]["loyalty_offer"].update(colour="red"), "remove 'colour'"),
    ],
)
def test_config_errors_name_the_file_key_and_fix(raw_content, change, message):
    raw = copy.deepcopy(raw_content)
    change(raw)
    with pytest.raises(ConfigError, match=message) as caught:
        parse_content_settings(raw)
    assert "conf/base/content.yaml: content." in str(caught.value) and "Fix:" in str(caught.value)


def test_targeting_combinations():
    condition = parse_condition(
        {
            "any": [
                {"segment": "vip"},
                {
                    "all": [
                        {"score": "intent_decile", "op": ">=", "value": 8},
                        {"not": {"customer": "country", "op": "in", "value": ["FR"]}},
                    ]
                },
            ]
        }
    )

    class Facts:
        def __init__(self, segments=(), scores=None, attributes=None):
            self.segments, self.scores, self.attributes, self.profile = frozenset(segments), scores or {}, attributes or {}, {}

    assert condition.holds(Facts(segments=["vip"]), frozenset(), {})
    assert condition.holds(Facts(scores={"intent_decile": 9}, attributes={"country": "DE"}), frozenset(), {})
    assert not condition.holds(Facts(scores={"intent_decile": 9}, attributes={"country": "FR"}), frozenset(), {})
    assert not condition.holds(Facts(scores={"intent_decile": None}), frozenset(), {})
    variant = parse_condition({"experiment": "hero_test", "variant": ["b", "c"]})
    assert variant.holds(Facts(), frozenset(), {"hero_test": "c"}) and not variant.holds(Facts(), frozenset(), {"hero_test": "a"})


class HashAssignments:
    """Half the customers in each arm, by the last digit of the id."""

    def in_global_holdout(self, customer_id):
        return False

    def assign(self, experiment, customer_id):
        if experiment != "personalized_content":
            raise KeyError(f"experiment {experiment!r} is not defined in conf/base/experiments.yaml")
        return "control" if customer_id.endswith(("0", "2", "4", "6", "8")) else "personalized"


def test_experiment_gate_gives_the_control_arm_the_generic_email(raw_content):
    raw = copy.deepcopy(raw_content)
    raw["experiment_gate"] = {"experiment": "personalized_content", "generic_variants": ["control"]}
    engine = ContentEngine(parse_content_settings(raw), HashAssignments())
    frequent = {"frequency": 3, "last_category_viewed": "shoes"}
    control = engine.decide(customer("cust_2", profile=frequent), "cust_2", now=NOW)
    treated = engine.decide(customer("cust_3", profile=frequent), "cust_3", now=NOW)
    assert not control.personalized and control.reason == "experiment control: personalized_content=control"
    assert control.blocks["offer"] == "generic_message" and treated.blocks["offer"] == "loyalty_offer"
    assert engine.merge_fields(control)["EXPCONTENT"] == "control" and engine.merge_fields(treated)["EXPCONTENT"] == "personalized"


def test_content_referring_to_an_undefined_experiment_is_a_config_error(raw_content):
    raw = copy.deepcopy(raw_content)
    raw["experiments"] = {"no_such_test": "EXPNOPE"}
    with pytest.raises(ConfigError, match="no_such_test"):
        ContentEngine(parse_content_settings(raw), HashAssignments())
