"""The folder registry: versions, cards, an atomic champion pointer, drift flags, promotion policy."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from models.provenance import code_version, library_versions
from models.registry import ModelRef, ModelRegistry, RegistryError
from models.training import decide_promotion

AT = datetime(2026, 11, 2, tzinfo=UTC)


def test_versions_cards_and_models_round_trip(tmp_path):
    registry = ModelRegistry(tmp_path)
    first = registry.register("purchase_intent", {"weights": [1, 2]}, {"metric": 0.8}, "<h1>{{version}}</h1>")
    second = registry.register("purchase_intent", {"weights": [3]}, {"metric": 0.9}, "<h1>{{version}}</h1>")
    assert (first, second) == ("v0001", "v0002")
    assert registry.versions("purchase_intent") == ["v0001", "v0002"]
    ref = ModelRef("purchase_intent", "v0002")
    assert registry.load(ref) == {"weights": [3]}
    assert registry.card(ref) == {"metric": 0.9, "name": "purchase_intent", "version": "v0002"}
    assert registry.card_html_path(ref).read_text() == "<h1>v0002</h1>"
    assert sorted(p.name for p in (tmp_path / "purchase_intent" / "v0002").iterdir()) == ["card.html", "card.json", "model.joblib"]


def test_a_reserved_but_unfinished_version_is_not_listed_and_not_reused(tmp_path):
    registry = ModelRegistry(tmp_path)
    (tmp_path / "purchase_intent" / "v0001").mkdir(parents=True)  # a trainer crashed mid-write
    assert registry.versions("purchase_intent") == []
    assert registry.register("purchase_intent", 1, {}, "") == "v0002"


def test_promotion_moves_the_pointer_and_logs_who_replaced_whom(tmp_path):
    registry = ModelRegistry(tmp_path)
    for _ in range(2):
        registry.register("behaviour_clusters", 1, {}, "")
    assert registry.champion("behaviour_clusters") is None
    registry.promote(ModelRef("behaviour_clusters", "v0001"), reason="no champion yet", at=AT)
    registry.promote(ModelRef("behaviour_clusters", "v0002"), reason="manual", at=AT)
    assert registry.champion("behaviour_clusters") == ModelRef("behaviour_clusters", "v0002")
    assert (tmp_path / "behaviour_clusters" / "champion").read_text() == "v0002\n"
    assert [(p["version"], p["previous"]) for p in registry.promotions("behaviour_clusters")] == [("v0001", None), ("v0002", "v0001")]
    assert not [p for p in (tmp_path / "behaviour_clusters").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(RegistryError, match="behaviour_clusters/v0009 is not in the registry"):
        registry.promote(ModelRef("behaviour_clusters", "v0009"), reason="typo", at=AT)


def test_drift_is_recorded_beside_the_version(tmp_path):
    registry = ModelRegistry(tmp_path)
    ref = ModelRef("purchase_intent", registry.register("purchase_intent", 1, {}, ""))
    registry.record_drift(
        ref,
        {
            "checked_at": AT.isoformat(),
            "rows": 10,
            "score_psi": 0.4,
            "max_feature_psi": 0.1,
            "needs_retraining": True,
            "reasons": ["score PSI 0.400 > 0.25"],
        },
    )
    document = json.loads((tmp_path / "purchase_intent" / "v0001" / "drift.json").read_text())
    assert document["needs_retraining"] and document["history"][0]["score_psi"] == 0.4


def test_a_bare_version_resolves_only_when_unambiguous(tmp_path):
    registry = ModelRegistry(tmp_path)
    registry.register("purchase_intent", 1, {}, "")
    registry.register("behaviour_clusters", 1, {}, "")
    registry.register("behaviour_clusters", 1, {}, "")
    assert registry.resolve("v0002") == ModelRef("behaviour_clusters", "v0002")
    assert registry.resolve("v0001", "purchase_intent") == ModelRef("purchase_intent", "v0001")
    assert registry.resolve("purchase_intent/v0001") == ModelRef("purchase_intent", "v0001")
    with pytest.raises(
        RegistryError, match="purchase_intent/v0001 or behaviour_clusters/v0001|behaviour_clusters/v0001 or purchase_intent/v0001"
    ):
        registry.resolve("v0001")


@pytest.mark.parametrize(
    ("challenger", "champion", "promoted"),
    [(0.80, None, True), (0.80, 0.79, True), (0.793, 0.79, False), (0.70, 0.79, False), (None, 0.79, False)],
)
def test_a_challenger_must_beat_the_champion_by_the_margin(challenger, champion, promoted):
    assert decide_promotion(challenger, champion, 0.005, "auc")[0] is promoted


def test_provenance_names_code_and_libraries():
    assert re.match(r"^(git:[0-9a-f]{40}|lakecdp \S+)$", code_version())
    versions = library_versions()
    assert versions["scikit-learn"] and versions["python"]
