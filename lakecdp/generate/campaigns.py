"""Email campaigns and each recipient's engagement: delivered, opened, clicked, unsubscribed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from lakecdp.generate.draws import between, chance, one_of, short_id
from lakecdp.generate.local_time import local_hour_ms
from lakecdp.generate.messages import CustomerJournal, email_context
from lakecdp.generate.population import Customer
from lakecdp.generate.sessions import SessionStart
from lakecdp.generate.settings import CAMPAIGN_STREAM, CATEGORIES, SHOP_URL, GeneratorSettings, random_stream

CAMPAIGN_EVERY_DAYS = 3
SEND_SPREAD_MS = 30 * 60_000  # an ESP drains a send over about half an hour
OPEN_DELAY_MEDIAN_S = 90 * 60
CLICK_TO_VISIT_RATE = 0.6
SUBJECT_TEMPLATES = (
    "New in: {category} picked for you",
    "Your {category} edit for the week",
    "Last chance: {category} favourites",
    "Back in stock: {category}",
)


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    category: str
    subject: str
    send_day: date  # in each recipient's own time zone
    local_send_hour: int

    @property
    def link_path(self) -> str:
        return f"/c/{self.category}?utm_source=email&utm_campaign={self.campaign_id}"


def plan_campaigns(settings: GeneratorSettings) -> tuple[Campaign, ...]:
    """One campaign every few days, rotating through categories, sent at a local hour."""
    rng = random_stream(settings.seed, CAMPAIGN_STREAM)
    category_order = [CATEGORIES[i] for i in rng.permutation(len(CATEGORIES))]
    first_day = settings.start.date() + timedelta(days=1)
    campaigns = []
    for number, offset in enumerate(range(0, settings.days, CAMPAIGN_EVERY_DAYS)):
        send_day = first_day + timedelta(days=offset)
        category = category_order[number % len(category_order)]
        template = one_of(rng, SUBJECT_TEMPLATES)
        campaigns.append(
            Campaign(
                campaign_id=f"cmp_{send_day:%Y%m%d}_{category}",
                category=category,
                subject=template.format(category=category),
                send_day=send_day,
                local_send_hour=10 if rng.random() < 0.6 else 18,
            )
        )
    return tuple(campaigns)


def receive_campaigns(
    rng: np.random.Generator,
    journal: CustomerJournal,
    customer: Customer,
    campaigns: tuple[Campaign, ...],
) -> list[SessionStart]:
    """Emits the customer's email events; returns the shop visits their clicks lead to."""
    if not customer.marketing_opt_in:
        return []
    zone = ZoneInfo(customer.timezone)
    visits: list[SessionStart] = []
    for campaign in campaigns:
        delivered_ms = _delivery_ms(rng, campaign, zone)
        if delivered_ms < customer.active_from_ms:
            continue  # not signed up yet
        email_id = short_id(rng, "eml")
        properties = {"campaign_id": campaign.campaign_id, "email_id": email_id, "email_subject": campaign.subject}
        _email_event(journal, customer, delivered_ms, "Email Delivered", properties, with_reader=False)
        opened_ms = delivered_ms + int(rng.lognormal(np.log(OPEN_DELAY_MEDIAN_S), 1.0) * 1000)
        if opened_ms >= customer.active_until_ms or not chance(rng, customer.email_open_rate):
            continue
        _email_event(journal, customer, opened_ms, "Email Opened", properties)
        if chance(rng, customer.profile.unsubscribe_rate):
            _email_event(journal, customer, opened_ms + between(rng, 5_000, 60_000), "Unsubscribed", properties)
            break  # no further campaigns reach an unsubscribed address
        if chance(rng, customer.email_click_rate):
            clicked_ms = opened_ms + between(rng, 3_000, 180_000)
            click_properties = {**properties, "link_url": f"{SHOP_URL}{campaign.link_path}"}
            _email_event(journal, customer, clicked_ms, "Email Link Clicked", click_properties)
            if chance(rng, CLICK_TO_VISIT_RATE):
                visits.append(
                    SessionStart(
                        at_ms=clicked_ms + between(rng, 1_000, 8_000),
                        landing_category=campaign.category,
                        landing_campaign=campaign.campaign_id,
                        device=customer.preferred_device,
                    )
                )
    return visits


def _delivery_ms(rng: np.random.Generator, campaign: Campaign, zone: ZoneInfo) -> int:
    send_ms = local_hour_ms(campaign.send_day, campaign.local_send_hour, zone)
    return send_ms + between(rng, 0, SEND_SPREAD_MS)


def _email_event(
    journal: CustomerJournal,
    customer: Customer,
    at_ms: int,
    event: str,
    properties: dict,
    *,
    with_reader: bool = True,
) -> None:
    # ESP events carry the customer's main browser id so identity stitching can join them.
    reader = customer.preferred_device if with_reader else None
    journal.track(
        at_ms,
        event,
        dict(properties),
        user_id=customer.customer_id,
        anonymous_id=customer.preferred_device.anonymous_id,
        context=email_context(customer, reader),
    )
