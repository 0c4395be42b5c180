"""Customers and their latent traits: behaviour type, purchase propensity, place, devices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from lakecdp.generate.draws import one_of, pick, uuid_text
from lakecdp.generate.local_time import local_days, shopping_moment_ms
from lakecdp.generate.settings import (
    BEHAVIOUR_TYPES,
    CATEGORIES,
    LAPSED_QUIET_DAYS,
    GeneratorSettings,
)

DAY_MS = 86_400_000
MARKETING_OPT_IN_SHARE = 0.85
PREFERRED_DEVICE_SHARE = 0.75


@dataclass(frozen=True)
class BehaviourProfile:
    """Population-level means of one behaviour type; each customer jitters around them."""

    share: float
    sessions_per_day: float
    views_per_session: float
    favourite_count: tuple[int, int]
    favourite_focus: float  # chance a newly browsed category is a favourite
    add_to_cart_rate: float  # per product view
    propensity_beta: tuple[float, float]
    price_taste: float  # exponent on price when picking products: < 0 cheap, > 0 premium
    coupon_rate: float
    second_unit_rate: float
    search_rate: float
    email_open_rate: float
    email_click_rate: float  # given an open
    unsubscribe_rate: float  # given an open
    device_mix: tuple[tuple[str, float], ...]


BEHAVIOUR_PROFILES = {
    "bargain_hunter": BehaviourProfile(
        share=0.25,
        sessions_per_day=0.19,
        views_per_session=5.0,
        favourite_count=(2, 3),
        favourite_focus=0.60,
        add_to_cart_rate=0.14,
        propensity_beta=(3.0, 12.0),
        price_taste=-2.0,
        coupon_rate=0.75,
        second_unit_rate=0.15,
        search_rate=0.45,
        email_open_rate=0.38,
        email_click_rate=0.35,
        unsubscribe_rate=0.005,
        device_mix=(("mobile", 0.65), ("desktop", 0.25), ("tablet", 0.10)),
    ),
    "loyal_high_spender": BehaviourProfile(
        share=0.15,
        sessions_per_day=0.21,
        views_per_session=4.0,
        favourite_count=(1, 2),
        favourite_focus=0.85,
        add_to_cart_rate=0.22,
        propensity_beta=(6.0, 10.0),
        price_taste=1.2,
        coupon_rate=0.08,
        second_unit_rate=0.30,
        search_rate=0.20,
        email_open_rate=0.50,
        email_click_rate=0.30,
        unsubscribe_rate=0.002,
        device_mix=(("desktop", 0.50), ("mobile", 0.40), ("tablet", 0.10)),
    ),
    "window_shopper": BehaviourProfile(
        share=0.25,
        sessions_per_day=0.24,
        views_per_session=6.5,
        favourite_count=(3, 4),
        favourite_focus=0.45,
        add_to_cart_rate=0.035,
        propensity_beta=(1.2, 28.0),
        price_taste=0.3,
        coupon_rate=0.20,
        second_unit_rate=0.05,
        search_rate=0.30,
        email_open_rate=0.20,
        email_click_rate=0.12,
        unsubscribe_rate=0.012,
        device_mix=(("mobile", 0.75), ("desktop", 0.15), ("tablet", 0.10)),
    ),
    "lapsed": BehaviourProfile(
        share=0.20,
        sessions_per_day=0.16,
        views_per_session=3.5,
        favourite_count=(1, 3),
        favourite_focus=0.70,
        add_to_cart_rate=0.09,
        propensity_beta=(2.0, 14.0),
        price_taste=0.0,
        coupon_rate=0.25,
        second_unit_rate=0.10,
        search_rate=0.25,
        email_open_rate=0.15,
        email_click_rate=0.15,
        unsubscribe_rate=0.020,
        device_mix=(("desktop", 0.45), ("mobile", 0.45), ("tablet", 0.10)),
    ),
    "new_explorer": BehaviourProfile(
        share=0.15,
        sessions_per_day=0.22,
        views_per_session=5.5,
        favourite_count=(2, 4),
        favourite_focus=0.35,
        add_to_cart_rate=0.09,
        propensity_beta=(2.0, 12.0),
        price_taste=0.0,
        coupon_rate=0.35,
        second_unit_rate=0.10,
        search_rate=0.40,
        email_open_rate=0.32,
        email_click_rate=0.25,
        unsubscribe_rate=0.008,
        device_mix=(("mobile", 0.60), ("desktop", 0.30), ("tablet", 0.10)),
    ),
}
if tuple(BEHAVIOUR_PROFILES) != BEHAVIOUR_TYPES:
    raise RuntimeError("BEHAVIOUR_PROFILES must list BEHAVIOUR_TYPES, in that order")


@dataclass(frozen=True)
class Region:
    country: str
    timezone: str
    cities: tuple[str, ...]
    share: float


# Every city sits in its region's IANA zone (Brisbane, for one, would not: no DST).
REGIONS = (
    Region("US", "America/New_York", ("New York", "Boston", "Philadelphia"), 0.20),
    Region("US", "America/Los_Angeles", ("Los Angeles", "San Francisco", "Seattle"), 0.15),
    Region("GB", "Europe/London", ("London", "Manchester", "Bristol"), 0.12),
    Region("DE", "Europe/Berlin", ("Berlin", "Munich", "Hamburg"), 0.11),
    Region("FR", "Europe/Paris", ("Paris", "Lyon", "Marseille"), 0.10),
    Region("JP", "Asia/Tokyo", ("Tokyo", "Osaka", "Yokohama"), 0.08),
    Region("BR", "America/Sao_Paulo", ("Sao Paulo", "Rio de Janeiro", "Curitiba"), 0.08),
    Region("AU", "Australia/Sydney", ("Sydney", "Newcastle", "Wollongong"), 0.07),
    Region("IN", "Asia/Kolkata", ("Mumbai", "Bengaluru", "Delhi"), 0.09),
)
FIRST_NAMES = (
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Lucas",
    "Mia",
    "Leon",
    "Sofia",
    "Hugo",
    "Chloe",
    "Louis",
    "Hannah",
    "Felix",
    "Yuki",
    "Haruto",
    "Ana",
    "Pedro",
    "Priya",
    "Arjun",
    "Grace",
    "Jack",
    "Isla",
    "Oscar",
    "Lea",
    "Jonas",
    "Camille",
    "Mateo",
    "Aiko",
    "Ravi",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Brown",
    "Garcia",
    "Miller",
    "Wilson",
    "Taylor",
    "Evans",
    "Walker",
    "Mueller",
    "Schmidt",
    "Fischer",
    "Martin",
    "Bernard",
    "Dubois",
    "Tanaka",
    "Sato",
    "Suzuki",
    "Silva",
    "Santos",
    "Oliveira",
    "Sharma",
    "Patel",
    "Iyer",
    "Nguyen",
    "Kelly",
    "Wright",
    "Moreau",
    "Weber",
    "Costa",
)
OPERATING_SYSTEMS = {
    "mobile": (("iOS", 0.55), ("Android", 0.45)),
    "desktop": (("Windows", 0.60), ("Mac OS", 0.40)),
    "tablet": (("iPadOS", 0.70), ("Android", 0.30)),
}
USER_AGENTS = {
    ("mobile", "iOS"): "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ("mobile", "Android"): "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    ("desktop", "Windows"): "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ("desktop", "Mac OS"): "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    ("tablet", "iPadOS"): "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ("tablet", "Android"): "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
}
# RFC 5737 documentation ranges: never a real visitor's address.
DOCUMENTATION_NETWORKS = ("203.0.113", "198.51.100")


@dataclass(frozen=True)
class Device:
    anonymous_id: str
    device_type: str
    os_name: str
    user_agent: str
    ip: str


@dataclass(frozen=True)
class Customer:
    """One customer's latent truth, CRM record and personal behaviour rates."""

    customer_id: str
    behaviour_type: str
    profile: BehaviourProfile
    purchase_propensity: float
    favourite_categories: tuple[str, ...]
    country: str
    city: str
    timezone: str
    first_name: str
    last_name: str
    email: str
    signup_date: date
    marketing_opt_in: bool
    devices: tuple[Device, ...]  # devices[0] is the preferred one
    sessions_per_day: float
    views_per_session: float
    add_to_cart_rate: float
    email_open_rate: float
    email_click_rate: float
    active_from_ms: int  # new explorers arrive during the window
    active_until_ms: int  # lapsed customers go quiet before the end

    @property
    def preferred_device(self) -> Device:
        return self.devices[0]


def draw_customer(rng: np.random.Generator, index: int, settings: GeneratorSettings) -> Customer:
    """Draws one customer's latent traits from their own random stream."""
    behaviour_type = pick(rng, [(name, p.share) for name, p in BEHAVIOUR_PROFILES.items()])
    profile = BEHAVIOUR_PROFILES[behaviour_type]
    region = pick(rng, [(region, region.share) for region in REGIONS])
    first_name = one_of(rng, FIRST_NAMES)
    last_name = one_of(rng, LAST_NAMES)
    active_from_ms, active_until_ms = _active_span(rng, behaviour_type, region.timezone, settings)
    return Customer(
        customer_id=f"cust_{index:06d}",
        behaviour_type=behaviour_type,
        profile=profile,
        purchase_propensity=float(rng.beta(*profile.propensity_beta)),
        favourite_categories=_favourite_categories(rng, profile),
        country=region.country,
        city=one_of(rng, region.cities),
        timezone=region.timezone,
        first_name=first_name,
        last_name=last_name,
        email=f"{first_name}.{last_name}.{index}@example.com".lower(),
        signup_date=_signup_date(rng, behaviour_type, settings, active_from_ms),
        marketing_opt_in=bool(rng.random() < MARKETING_OPT_IN_SHARE),
        devices=_devices(rng, profile),
        sessions_per_day=profile.sessions_per_day * _jitter(rng, 0.35),
        views_per_session=profile.views_per_session * _jitter(rng, 0.25),
        add_to_cart_rate=min(0.9, profile.add_to_cart_rate * _jitter(rng, 0.30)),
        email_open_rate=_rate_near(rng, profile.email_open_rate),
        email_click_rate=_rate_near(rng, profile.email_click_rate),
        active_from_ms=active_from_ms,
        active_until_ms=active_until_ms,
    )


# CRM attributes beyond contacts (conf/base/customers.yaml), planted per behaviour type: the tier a
# loyalty programme gives, an income band and an age. (tier shares, income shares) by behaviour.
LOYALTY_TIERS = ("none", "bronze", "silver", "gold", "platinum")
INCOME_BANDS = ("low", "middle", "high", "very_high")
_CRM_MIX = {
    "loyal_high_spender": ((0.02, 0.08, 0.25, 0.45, 0.20), (0.05, 0.30, 0.45, 0.20)),
    "bargain_hunter": ((0.30, 0.40, 0.25, 0.05, 0.00), (0.35, 0.45, 0.15, 0.05)),
    "lapsed": ((0.40, 0.35, 0.20, 0.05, 0.00), (0.25, 0.45, 0.22, 0.08)),
}
_CRM_MIX_DEFAULT = ((0.45, 0.30, 0.18, 0.06, 0.01), (0.20, 0.45, 0.25, 0.10))


def crm_attributes(customer: Customer) -> dict[str, object]:
    """A customer's loyalty tier, income band and age: drawn from a stream of their own id, so adding
    them left every other generated value as it was."""
    rng = np.random.default_rng(int(customer.customer_id.rsplit("_", 1)[-1]) + 7_919)
    tiers, incomes = _CRM_MIX.get(customer.behaviour_type, _CRM_MIX_DEFAULT)
    return {
        "loyalty_tier": LOYALTY_TIERS[int(rng.choice(len(LOYALTY_TIERS), p=tiers))],
        "income_band": INCOME_BANDS[int(rng.choice(len(INCOME_BANDS), p=incomes))],
        "age": int(np.clip(rng.normal(41, 13), 18, 90)),
    }


def _jitter(rng: np.random.Generator, log_sd: float) -> float:
    """Multiplicative noise around 1 so types overlap a little, as real segments do."""
    return float(rng.lognormal(0.0, log_sd))


def _rate_near(rng: np.random.Generator, mean: float, concentration: float = 15.0) -> float:
    return float(rng.beta(mean * concentration, (1.0 - mean) * concentration))


def _favourite_categories(rng: np.random.Generator, profile: BehaviourProfile) -> tuple[str, ...]:
    low, high = profile.favourite_count
    count = int(rng.integers(low, high + 1))
    chosen = rng.choice(len(CATEGORIES), size=count, replace=False)
    return tuple(CATEGORIES[i] for i in sorted(chosen))


def _active_span(rng: np.random.Generator, behaviour_type: str, timezone: str, settings: GeneratorSettings) -> tuple[int, int]:
    start_ms, end_ms = settings.start_ms, settings.end_ms
    if behaviour_type == "new_explorer":
        # They sign up in a first visit at an ordinary local shopping hour.
        zone = ZoneInfo(timezone)
        days = local_days(settings.start, settings.end, zone)
        first_visit_ms = shopping_moment_ms(rng, days[int(rng.integers(max(1, len(days) * 3 // 4)))], zone)
        return min(max(first_visit_ms, start_ms), end_ms - 1), end_ms
    if behaviour_type == "lapsed":
        # Half a day of margin beyond the quiet period, so a last session never crosses it.
        quiet_days = LAPSED_QUIET_DAYS + 0.5 + rng.random() * 8.0
        return start_ms, end_ms - int(quiet_days * DAY_MS)
    return start_ms, end_ms


def _signup_date(rng: np.random.Generator, behaviour_type: str, settings: GeneratorSettings, active_from_ms: int) -> date:
    if behaviour_type == "new_explorer":
        return (settings.start + timedelta(milliseconds=active_from_ms - settings.start_ms)).date()
    days_before = int(rng.integers(60 if behaviour_type == "lapsed" else 20, 900))
    return (settings.start - timedelta(days=days_before)).date()


def _devices(rng: np.random.Generator, profile: BehaviourProfile) -> tuple[Device, ...]:
    preferred_type = pick(rng, list(profile.device_mix))
    extra_count = pick(rng, [(0, 0.45), (1, 0.40), (2, 0.15)])
    other_types = [t for t, _ in profile.device_mix if t != preferred_type]
    extra_types = [other_types[i] for i in sorted(rng.choice(2, size=extra_count, replace=False))]
    return tuple(_device(rng, device_type) for device_type in [preferred_type, *extra_types])


def _device(rng: np.random.Generator, device_type: str) -> Device:
    os_name = pick(rng, list(OPERATING_SYSTEMS[device_type]))
    network = one_of(rng, DOCUMENTATION_NETWORKS)
    return Device(
        anonymous_id=uuid_text(rng),
        device_type=device_type,
        os_name=os_name,
        user_agent=USER_AGENTS[(device_type, os_name)],
        ip=f"{network}.{int(rng.integers(1, 255))}",
    )


def session_device(rng: np.random.Generator, customer: Customer) -> Device:
    """The device a session runs on: mostly the preferred one."""
    if len(customer.devices) == 1 or rng.random() < PREFERRED_DEVICE_SHARE:
        return customer.preferred_device
    return customer.devices[int(rng.integers(1, len(customer.devices)))]
