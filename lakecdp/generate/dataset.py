"""Assembles the whole synthetic dataset in memory: events, truth, CRM rows and catalog."""

from __future__ import annotations

from dataclasses import dataclass

from lakecdp.generate.campaigns import plan_campaigns, receive_campaigns
from lakecdp.generate.catalog import Catalog, build_catalog
from lakecdp.generate.messages import CustomerJournal, iso_utc
from lakecdp.generate.population import Customer, crm_attributes, draw_customer
from lakecdp.generate.sessions import plan_session_starts, run_sessions
from lakecdp.generate.settings import CUSTOMER_STREAM, SIGNALS_STREAM, GeneratorSettings, random_stream
from lakecdp.generate.signals import plant_signals


@dataclass(frozen=True)
class Dataset:
    """Generated data; events are Segment messages sorted by timestamp (then messageId)."""

    settings: GeneratorSettings
    events: list[dict]
    truth: list[dict]
    customers: list[dict]
    products: list[dict]


def generate_dataset(settings: GeneratorSettings | None = None) -> Dataset:
    """Simulates every customer over the window; same settings give the same dataset."""
    settings = settings or GeneratorSettings()
    catalog = build_catalog(settings.seed)
    campaigns = plan_campaigns(settings)
    timeline: list[tuple[int, str, dict]] = []
    truth, crm = [], []
    for index in range(1, settings.customers + 1):
        # Each customer has an own stream: their history does not shift when others change.
        rng = random_stream(settings.seed, CUSTOMER_STREAM, index)
        customer = draw_customer(rng, index, settings)
        journal = CustomerJournal(rng, settings.start_ms, settings.end_ms)
        email_visits = receive_campaigns(rng, journal, customer, campaigns)
        starts = plan_session_starts(rng, customer, settings) + email_visits
        run_sessions(rng, journal, customer, catalog, starts, settings)
        signals = plant_signals(random_stream(settings.seed, SIGNALS_STREAM, index), journal, customer, catalog)
        timeline.extend(journal.entries)
        truth.append(_truth_row(customer, journal) | signals)
        crm.append(_crm_row(customer))
    timeline.sort(key=lambda entry: (entry[0], entry[1]))
    return Dataset(
        settings=settings,
        events=[message for _, _, message in timeline],
        truth=truth,
        customers=crm,
        products=_catalog_rows(catalog),
    )


def _truth_row(customer: Customer, journal: CustomerJournal) -> dict:
    """The latent facts models must recover; last_event_at is the last own (non-ESP) event."""
    last_activity_ms = journal.last_activity_ms
    return {
        "customer_id": customer.customer_id,
        "behaviour_type": customer.behaviour_type,
        "purchase_propensity": round(customer.purchase_propensity, 4),
        "favourite_categories": list(customer.favourite_categories),
        "country": customer.country,
        "timezone": customer.timezone,
        "preferred_device": customer.preferred_device.device_type,
        **crm_attributes(customer),
        "orders_in_dataset": journal.orders_completed,
        "last_event_at": iso_utc(last_activity_ms) if last_activity_ms is not None else None,
    }


def _crm_row(customer: Customer) -> dict:
    return {
        "customer_id": customer.customer_id,
        "email": customer.email,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "country": customer.country,
        "city": customer.city,
        "signup_date": customer.signup_date.isoformat(),
        "marketing_opt_in": customer.marketing_opt_in,
        **crm_attributes(customer),
    }


def _catalog_rows(catalog: Catalog) -> list[dict]:
    return [product.catalog_row() for product in catalog.products]
