"""Offline evaluation on a time split: hit rate and recall@k of learned recs against popularity.

Train on everything before `end - test_days`, recommend as of that instant, and check the
recommendations against what each customer went on to view, cart or buy in the test days
(products they had already bought are excluded from the truth: neither list may recommend them).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pyspark.sql import DataFrame, functions as F

from lakecdp.content.settings import RecsSettings
from lakecdp.recs.transforms import build_recommendations, interactions, item_popularity, popular_candidates, rank_recommendations

TARGETS = {
    "engaged": ("Product Viewed", "Product Added", "Order Completed"),
    "carted_or_bought": ("Product Added", "Order Completed"),
}


@dataclass(frozen=True)
class Scores:
    hit_rate: float
    recall: float


@dataclass(frozen=True)
class Evaluation:
    k: int
    cutoff: datetime
    end: datetime
    customers: dict[str, int]                 # target -> customers evaluated
    learned: dict[str, Scores]
    popularity: dict[str, Scores]

    def lines(self) -> list[str]:
        out = [f"recommendations offline evaluation: train < {self.cutoff:%Y-%m-%d %H:%M}, test until {self.end:%Y-%m-%d %H:%M} UTC, k={self.k}"]
        out.append(f"  {'target':<18} {'customers':>9} {'model':<11} {'hit_rate@k':>10} {'recall@k':>9}")
        for target in self.learned:
            for name, scores in (("learned", self.learned[target]), ("popularity", self.popularity[target])):
                out.append(f"  {target:<18} {self.customers[target]:>9,} {name:<11} {scores.hit_rate:>10.3f} {scores.recall:>9.3f}")
            lift = self.learned[target].hit_rate / self.popularity[target].hit_rate - 1 if self.popularity[target].hit_rate else float("nan")
            out.append(f"  {'':<18} {'':>9} {'lift':<11} {lift:>+10.1%}")
        return out


def evaluate_recommendations(events: DataFrame, catalog: DataFrame, settings: RecsSettings, *, end: datetime, k: int | None = None) -> Evaluation:
    """Learned recommendations (rules left out: they are business choices) vs the popularity baseline."""
    k = k or settings.k
    cutoff = end - timedelta(days=settings.test_days)
    learned_settings = settings.model_copy(update={"rules": (), "k": k})
    train = interactions(events, learned_settings, until=cutoff).persist()
    try:
        learned = build_recommendations(train, catalog, learned_settings).select("customer_id", "product_id")
        popular = rank_recommendations(
            popular_candidates(train, item_popularity(train), k + 50), train, catalog, k, max_rule_items=1
        ).select("customer_id", "product_id")
        lists = learned.withColumn("model", F.lit("learned")).unionByName(popular.withColumn("model", F.lit("popularity")))
        rows = _scores(lists, _truth(events, train, learned_settings, cutoff=cutoff, end=end)).collect()
    finally:
        train.unpersist()
    customers = {target: 0 for target in TARGETS}
    scores: dict[str, dict[str, Scores]] = {"learned": {}, "popularity": {}}
    for row in rows:
        customers[row.target] = int(row.customers)
        scores[row.model][row.target] = Scores(float(row.hit_rate), float(row.recall))
    empty = Scores(0.0, 0.0)
    learned_scores = {t: scores["learned"].get(t, empty) for t in TARGETS}
    popular_scores = {t: scores["popularity"].get(t, empty) for t in TARGETS}
    return Evaluation(k, cutoff, end, customers, learned_scores, popular_scores)


def _truth(events: DataFrame, train: DataFrame, settings: RecsSettings, *, cutoff: datetime, end: datetime) -> DataFrame:
    """(target, customer_id, product_id): what warm customers engaged with in the test days, minus what they had bought."""
    test_window = (F.col("timestamp") >= F.lit(cutoff).cast("timestamp")) & (F.col("timestamp") < F.lit(end).cast("timestamp"))
    bought = train.filter(F.col("is_bought")).select("customer_id", "product_id")
    warm = train.select("customer_id").distinct()
    per_target = [
        interactions(events.filter(test_window & F.col("event").isin(*names)), settings, until=end)
        .select(F.lit(target).alias("target"), "customer_id", "product_id")
        for target, names in TARGETS.items()
    ]
    truth = per_target[0]
    for frame in per_target[1:]:
        truth = truth.unionByName(frame)
    return truth.join(bought, on=["customer_id", "product_id"], how="left_anti").join(warm, on="customer_id", how="left_semi")


def _scores(lists: DataFrame, truth: DataFrame) -> DataFrame:
    """(model, target, customers, hit_rate, recall) in one Spark job for both lists and both targets."""
    hits = lists.join(truth, on=["customer_id", "product_id"], how="inner").groupBy("model", "target", "customer_id").agg(F.count("*").alias("hits"))
    relevant = truth.groupBy("target", "customer_id").agg(F.count("*").alias("relevant"))
    models = lists.sparkSession.createDataFrame([("learned",), ("popularity",)], "model string")
    hit_count = F.coalesce(F.col("hits"), F.lit(0))
    return (
        relevant.crossJoin(models)
        .join(hits, on=["model", "target", "customer_id"], how="left")
        .groupBy("model", "target")
        .agg(
            F.count("*").alias("customers"),
            F.avg((hit_count > 0).cast("double")).alias("hit_rate"),
            F.avg(hit_count / F.col("relevant")).alias("recall"),
        )
    )
