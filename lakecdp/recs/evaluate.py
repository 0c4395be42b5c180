"""Offline evaluation on a time split: hit rate, precision and recall@k of each recommender against popularity.

Train on everything before `end - test_days`, recommend as of that instant, and check the
recommendations against what each customer went on to view, cart or buy in the test days
(products they had already bought are excluded from the truth: no list may recommend them).
The recommenders: co-occurrence (item-to-item CF), content-based (catalog attributes), their
blend at content_based.weight (what `recs build` writes) and the popularity baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, functions as F

from lakecdp.content.settings import RecsSettings
from lakecdp.recs.content_based import similar_products_frame
from lakecdp.recs.transforms import build_recommendations, interactions, item_popularity, popular_candidates, rank_recommendations

TARGETS = {
    "engaged": ("Product Viewed", "Product Added", "Order Completed"),
    "carted_or_bought": ("Product Added", "Order Completed"),
    "bought": ("Order Completed",),
}
COOCCURRENCE, CONTENT, BLEND, POPULARITY = "cooccurrence", "content", "blend", "popularity"


@dataclass(frozen=True)
class Scores:
    hit_rate: float  # share of customers with at least one relevant product in their list
    precision: float  # relevant products in the list / k
    recall: float  # relevant products in the list / relevant products


@dataclass(frozen=True)
class Evaluation:
    k: int
    cutoff: datetime
    end: datetime
    content_weight: float
    customers: dict[str, int]  # target -> customers evaluated
    scores: dict[str, dict[str, Scores]]  # model -> target -> scores

    def lines(self) -> list[str]:
        out = [
            f"recommendations offline evaluation: train < {self.cutoff:%Y-%m-%d %H:%M}, test until {self.end:%Y-%m-%d %H:%M} UTC, k={self.k}",
            f"  models: {COOCCURRENCE} (item-to-item CF, category and popularity fallbacks), {CONTENT} (catalog attributes, same fallbacks), "
            f"{BLEND} (content_based.weight {self.content_weight:g}: what `recs build` writes, rules aside), {POPULARITY} (the baseline)",
            f"  {'target':<18} {'customers':>9} {'model':<13} {'hit_rate@k':>10} {'precision@k':>11} {'recall@k':>9} {'hit lift':>9}",
        ]
        for target in TARGETS:
            baseline = self.scores[POPULARITY][target].hit_rate
            for model, by_target in self.scores.items():
                scores = by_target[target]
                lift = "" if model == POPULARITY else (f"{scores.hit_rate / baseline - 1:+.1%}" if baseline else "n/a")
                out.append(
                    f"  {target:<18} {self.customers[target]:>9,} {model:<13} {scores.hit_rate:>10.3f} {scores.precision:>11.3f} {scores.recall:>9.3f} {lift:>9}"
                )
        return out


def evaluate_recommendations(
    events: DataFrame, catalog: DataFrame, settings: RecsSettings, *, end: datetime, k: int | None = None
) -> Evaluation:
    """Co-occurrence, content-based and their blend (rules left out: they are business choices) vs the popularity baseline."""
    k = k or settings.k
    cutoff = end - timedelta(days=settings.test_days)
    learned_settings = settings.model_copy(update={"rules": (), "k": k})
    weight = settings.content_based.weight
    weights = {COOCCURRENCE: 0.0, CONTENT: 1.0, **({BLEND: weight} if 0 < weight < 1 else {})}
    train = interactions(events, learned_settings, until=cutoff).persist()
    similar = similar_products_frame(catalog, settings.content_based).persist()
    try:
        lists = rank_recommendations(popular_candidates(train, item_popularity(train), k + 50), train, catalog, k, max_rule_items=1).select(
            "customer_id", "product_id", F.lit(POPULARITY).alias("model")
        )
        for model, content_weight in weights.items():
            model_settings = learned_settings.model_copy(
                update={"content_based": settings.content_based.model_copy(update={"weight": content_weight})}
            )
            learned = build_recommendations(train, catalog, model_settings, similar=similar)
            lists = lists.unionByName(learned.select("customer_id", "product_id", F.lit(model).alias("model")))
        models = [*weights, POPULARITY]
        rows = _scores(lists, _truth(events, train, learned_settings, cutoff=cutoff, end=end), models, k).collect()
    finally:
        similar.unpersist()
        train.unpersist()
    customers = {target: 0 for target in TARGETS}
    found: dict[tuple[str, str], Scores] = {}
    for row in rows:
        customers[row.target] = int(row.customers)
        found[(row.model, row.target)] = Scores(float(row.hit_rate), float(row.precision), float(row.recall))
    empty = Scores(0.0, 0.0, 0.0)
    scores = {model: {target: found.get((model, target), empty) for target in TARGETS} for model in models}
    return Evaluation(k, cutoff, end, weight, customers, scores)


def _truth(events: DataFrame, train: DataFrame, settings: RecsSettings, *, cutoff: datetime, end: datetime) -> DataFrame:
    """(target, customer_id, product_id): what warm customers engaged with in the test days, minus what they had bought."""
    test_window = (F.col("timestamp") >= F.lit(cutoff).cast("timestamp")) & (F.col("timestamp") < F.lit(end).cast("timestamp"))
    bought = train.filter(F.col("is_bought")).select("customer_id", "product_id")
    warm = train.select("customer_id").distinct()
    per_target = [
        interactions(events.filter(test_window & F.col("event").isin(*names)), settings, until=end).select(
            F.lit(target).alias("target"), "customer_id", "product_id"
        )
        for target, names in TARGETS.items()
    ]
    truth = per_target[0]
    for frame in per_target[1:]:
        truth = truth.unionByName(frame)
    return truth.join(bought, on=["customer_id", "product_id"], how="left_anti").join(warm, on="customer_id", how="left_semi")


def _scores(lists: DataFrame, truth: DataFrame, models: list[str], k: int) -> DataFrame:
    """(model, target, customers, hit_rate, precision, recall) in one Spark job for every list and target."""
    hits = (
        lists.join(truth, on=["customer_id", "product_id"], how="inner")
        .groupBy("model", "target", "customer_id")
        .agg(F.count("*").alias("hits"))
    )
    relevant = truth.groupBy("target", "customer_id").agg(F.count("*").alias("relevant"))
    model_names = lists.sparkSession.createDataFrame([(m,) for m in models], "model string")
    hit_count = F.coalesce(F.col("hits"), F.lit(0))
    return (
        relevant.crossJoin(F.broadcast(model_names))
        .join(hits, on=["model", "target", "customer_id"], how="left")
        .groupBy("model", "target")
        .agg(
            F.count("*").alias("customers"),
            F.avg((hit_count > 0).cast("double")).alias("hit_rate"),
            F.avg(hit_count / F.lit(k)).alias("precision"),
            F.avg(hit_count / F.col("relevant")).alias("recall"),
        )
    )
