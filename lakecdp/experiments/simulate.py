"""Seeded simulation of campaign outcomes, to check the analysis finds planted lifts and only those.

Each customer is delivered an email, opens with the arm's open rate, clicks given an open,
converts with the arm's conversion rate (more often after a click), and a conversion brings
log-normal revenue. Lifts multiply an arm's rates (and its mean order value).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from lakecdp.experiments.stats import ArmSummary, summarize


@dataclass(frozen=True)
class CampaignModel:
    open_rate: float = 0.30
    click_given_open: float = 0.20
    conversion_rate: float = 0.05
    order_value_median: float = 60.0
    order_value_sigma: float = 0.6
    # variant -> {"open_rate" | "click_given_open" | "conversion_rate" | "order_value": relative lift}
    lifts: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def rate(self, variant: str, name: str) -> float:
        return min(1.0, getattr(self, name) * (1.0 + self.lifts.get(variant, {}).get(name, 0.0)))


@dataclass(frozen=True)
class SimulatedArm:
    variant: str
    delivered: np.ndarray
    opened: np.ndarray
    clicked: np.ndarray
    converted: np.ndarray
    revenue: np.ndarray

    def summary(self) -> ArmSummary:
        return summarize(self.variant, self.delivered, self.opened, self.clicked, self.converted, self.revenue)


def simulate_arm(rng: np.random.Generator, variant: str, n: int, model: CampaignModel) -> SimulatedArm:
    """Per-customer outcomes of one arm."""
    delivered = np.ones(n, dtype=bool)
    opened = rng.random(n) < model.rate(variant, "open_rate")
    clicked = opened & (rng.random(n) < model.rate(variant, "click_given_open"))
    converted = rng.random(n) < model.rate(variant, "conversion_rate")
    median = model.order_value_median * (1.0 + model.lifts.get(variant, {}).get("order_value", 0.0))
    revenue = np.where(converted, rng.lognormal(np.log(median), model.order_value_sigma, n), 0.0).round(2)
    return SimulatedArm(variant, delivered, opened, clicked, converted, revenue)


def simulate_campaign(rng: np.random.Generator, arms: Mapping[str, int], model: CampaignModel) -> dict[str, SimulatedArm]:
    """Outcomes for every arm: {variant: customers}."""
    return {variant: simulate_arm(rng, variant, n, model) for variant, n in arms.items()}


def campaign_events(
    rng: np.random.Generator,
    assignments: Mapping[str, str],
    model: CampaignModel,
    *,
    campaign_id: str,
    sent_at: datetime,
    held_out: tuple[str, ...] = ("holdout", "global_holdout"),
) -> list[dict]:
    """Bronze-shaped event rows (Email Delivered/Opened/Link Clicked, Order Completed) for assigned customers.

    Held-out customers get no email but can still buy (at the control rate, with no lift), as in life.
    """
    rows: list[dict] = []
    for customer_id, variant in sorted(assignments.items()):
        is_sent = variant not in held_out
        arm = simulate_arm(rng, variant if is_sent else "__none__", 1, model)
        happened: list[tuple[str, timedelta, dict[str, str | float]]] = []
        if is_sent:
            happened.append(("Email Delivered", timedelta(0), {"campaign_id": campaign_id}))
            if arm.opened[0]:
                happened.append(("Email Opened", timedelta(hours=1), {"campaign_id": campaign_id}))
            if arm.clicked[0]:
                happened.append(("Email Link Clicked", timedelta(hours=1, minutes=2), {"campaign_id": campaign_id}))
        if arm.converted[0]:
            happened.append(("Order Completed", timedelta(days=2), {"revenue": float(arm.revenue[0])}))
        for event, offset, fields in happened:
            rows.append(
                {
                    "message_id": f"sim-{campaign_id}-{len(rows)}",
                    "event": event,
                    "customer_id": customer_id,
                    "user_id": customer_id,
                    "timestamp": sent_at + offset,
                    **fields,
                }
            )
    return rows
