"""Recommendations and experiments on a real lake: generated shop data through bronze, Spark, delta-rs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from lakecdp.config import load_settings
from lakecdp.config.models import LakeSettings
from lakecdp.content.settings import parse_content_settings
from lakecdp.events.ingest import ingest_lines, read_landing_lines
from lakecdp.experiments.assign import Assigner
from lakecdp.experiments.jobs import analyse, draw_global_holdout, materialize_assignments
from lakecdp.experiments.report import render_html
from lakecdp.experiments.settings import parse_experiment_settings
from lakecdp.experiments.simulate import CampaignModel, campaign_events
from lakecdp.flows.micro_batch import update_identity_links
from lakecdp.generate import GeneratorSettings, write_dataset
from lakecdp.identity.resolved import resolved_events
from lakecdp.lake import open_lake
from lakecdp.lake.tables import CUSTOMERS, EVENTS
from lakecdp.recs.jobs import evaluate, read_catalog
from lakecdp.recs.transforms import (
    EVENT_COLUMNS,
    build_recommendations,
    interactions,
    item_popularity,
    popular_candidates,
    rank_recommendations,
    with_catalog_fields,
)
from tests.pseudonyms import pid

pytestmark = pytest.mark.integration

END = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop(spark, tmp_path_factory):
    """A lake with 21 days of generated behaviour of 300 customers (bronze, identity links, CRM)."""
    root = tmp_path_factory.mktemp("recs")
    settings = load_settings(env={})
    data = root / "data"
    summary = write_dataset(GeneratorSettings(customers=300, days=21, seed=11, end=END), data)
    lake = open_lake(spark, LakeSettings(), root=str(root / "lake"))
    ingest_lines(lake, read_landing_lines(spark, [str(p) for p in summary.files]), received_at=END, settings=settings.events)
    update_identity_links(lake, lake.read("events"))
    crm = pd.read_csv(data / "crm" / "customers.csv", dtype=str)
    crm["signup_date"] = pd.to_datetime(crm["signup_date"]).dt.date
    crm["marketing_opt_in"] = crm["marketing_opt_in"] == "true"
    crm["source"], crm["updated_at"] = "test", pd.Timestamp(END).tz_localize(None)
    crm["external_id"], crm["customer_id"] = crm["customer_id"], crm["customer_id"].map(pid)  # as `lakecdp import` keys them
    lake.merge("customers", spark.createDataFrame(crm[list(CUSTOMERS.columns)], CUSTOMERS.schema))
    recs = parse_content_settings(settings.content).recommendations
    return lake, recs, str(data / "catalog" / "products.csv")


@pytest.fixture(scope="module")
def evaluation(shop):
    lake, recs, catalog = shop
    result = evaluate(lake, recs, end=END, catalog_path=catalog)
    print("\n".join(result.lines()))
    return result


def test_cooccurrence_and_blend_beat_popularity_on_generated_data(evaluation):
    assert list(evaluation.scores) == ["cooccurrence", "content", "blend", "popularity"]
    popularity = evaluation.scores["popularity"]
    for model in ("cooccurrence", "blend"):
        for target in ("engaged", "carted_or_bought"):
            assert evaluation.customers[target] > 50
            assert evaluation.scores[model][target].hit_rate > popularity[target].hit_rate, evaluation.lines()
            assert evaluation.scores[model][target].recall > popularity[target].recall, evaluation.lines()
    assert evaluation.customers["bought"] > 20  # held-out purchases
    assert evaluation.scores["blend"]["bought"].recall > popularity["bought"].recall, evaluation.lines()


def test_content_based_beats_popularity_where_the_generator_plants_category_affinity(evaluation):
    """Shoppers browse their planted favourite categories (truth: favourite_categories); attributes find them.

    Precision and recall on what customers went on to view: a list of products like theirs holds
    more of it than the shop's overall best sellers. (Ranked by likeness alone, popularity_prior 0,
    content-based falls below the baseline here: shoppers pick best sellers within their categories.)
    """
    content, popularity = evaluation.scores["content"]["engaged"], evaluation.scores["popularity"]["engaged"]
    assert content.precision > 1.1 * popularity.precision, evaluation.lines()
    assert content.recall > 1.1 * popularity.recall, evaluation.lines()


def test_content_based_lists_follow_the_planted_favourite_categories(shop, spark):
    lake, recs, catalog = shop
    truth = pd.read_json(Path(catalog).parents[1] / "truth" / "customers.jsonl", lines=True)  # the generator's planted facts
    favourites = {pid(row.customer_id): set(row.favourite_categories) for row in truth.itertuples()}
    events = resolved_events(lake).select(*EVENT_COLUMNS)
    interacted = interactions(events, recs, until=END).persist()
    try:
        products = read_catalog(lake, catalog, events)
        content_only = recs.model_copy(update={"rules": (), "content_based": recs.content_based.model_copy(update={"weight": 1.0})})
        content = build_recommendations(interacted, products, content_only).select("customer_id", "category").toPandas()
        top = popular_candidates(interacted, item_popularity(interacted), recs.k)
        popular = rank_recommendations(top, interacted, products, recs.k, max_rule_items=1)
        popular = with_catalog_fields(popular, products).select("customer_id", "category").toPandas()
    finally:
        interacted.unpersist()

    def favourite_share(lists: pd.DataFrame) -> float:
        known = lists[lists.customer_id.isin(favourites)]
        return float(sum(c in favourites[k] for k, c in zip(known.customer_id, known.category)) / len(known))

    assert favourite_share(content) > 0.6 > 0.4 > favourite_share(popular), (favourite_share(content), favourite_share(popular))


EXPERIMENTS = parse_experiment_settings(
    {
        "global_holdout": {"share": 0.05},
        "definitions": {
            "sim_lift": {"variants": {"control": 0.5, "treatment": 0.5}, "campaign_ids": ["sim_lift_1"], "conversion_window": "7d"},
            "sim_aa": {"variants": {"control": 0.5, "treatment": 0.5}, "campaign_ids": ["sim_aa_1"], "conversion_window": "7d"},
        },
    }
)


def append_simulated_campaign(lake, spark, experiment, model, sent_at, seed):
    assigner = Assigner(EXPERIMENTS, epoch="2026-07-02")
    ids = [f"sim_{i:05d}" for i in range(6000)]
    rows = campaign_events(
        np.random.default_rng(seed), {c: assigner.assign(experiment, c) for c in ids}, model, campaign_id=f"{experiment}_1", sent_at=sent_at
    )
    for row in rows:
        row.update(type="track", received_at=row["timestamp"], event_date=row["timestamp"].date())
    lake.append("events", spark.createDataFrame([{c: row.get(c) for c in EVENTS.columns} for row in rows], EVENTS.schema))
    return assigner


def test_report_finds_a_planted_lift_and_no_lift_in_an_aa_test(shop, spark, tmp_path):
    lake, _, _ = shop
    lifted = CampaignModel(conversion_rate=0.05, lifts={"treatment": {"conversion_rate": 0.6}})
    assigner = append_simulated_campaign(lake, spark, "sim_lift", lifted, END + timedelta(days=1), seed=1)
    append_simulated_campaign(lake, spark, "sim_aa", CampaignModel(conversion_rate=0.05), END + timedelta(days=12), seed=2)

    lift = analyse(lake, assigner, "sim_lift")
    assert lift.has_lift and "treatment +" in lift.verdict
    arms = {a.variant: a for a in lift.arms}
    assert set(arms) == {"control", "treatment"}  # the global holdout got no email, so it is not among recipients
    assert arms["control"].delivered == arms["control"].n and 0.03 < arms["control"].conversions / arms["control"].n < 0.07
    (tmp_path / "lift.html").write_text(render_html(lift))

    aa = analyse(lake, assigner, "sim_aa")
    assert not aa.has_lift and aa.verdict.startswith("no significant difference")


def test_holdout_draw_and_materialized_assignments_persist(shop):
    lake, _, _ = shop
    epoch, mode, balance = draw_global_holdout(lake, EXPERIMENTS, at=END)
    assert (epoch, mode) == ("2026-07-02", "country x RFM band")
    assert balance.customers == 300 and 6 <= balance.held_out <= 25
    assert draw_global_holdout(lake, EXPERIMENTS, at=END)[2] == balance  # re-running changes nothing
    assigner = Assigner(EXPERIMENTS, epoch=epoch)
    counts = materialize_assignments(lake, assigner, "sim_aa", at=END)
    assert sum(counts.values()) == 300 and set(counts) <= {"control", "treatment", "global_holdout"}
    stored = DeltaTable(lake.path("experiment_assignments")).to_pandas()
    assert all(assigner.assign("sim_aa", c) == v for c, v in zip(stored.customer_id, stored.variant))
