"""Content-based product similarity (scikit-learn on a tiny inline catalog, no Spark)."""

from __future__ import annotations

import pandas as pd
import pytest

from lakecdp.content.settings import AttributeWeights, ContentBasedSettings
from lakecdp.recs.content_based import price_bands, product_vectors, similar_products

SETTINGS = ContentBasedSettings(neighbours=3, price_bands=2)
COLUMNS = ["product_id", "name", "category", "price", "brand", "tags"]


def catalog(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


SHOP = catalog(
    [
        ("p1", "Trail Runner", "shoes", 120.0, "Acme", "running, trail"),
        ("p2", "Road Runner", "shoes", 110.0, "Acme", "running"),
        ("p3", "Canvas Sneaker", "shoes", 40.0, "Other", None),
        ("p4", "Oak Lamp", "home", 60.0, None, "lighting"),
        ("p5", None, None, None, None, None),  # nothing known: no neighbours, no one's neighbour
    ]
)


def neighbours(found: pd.DataFrame) -> dict[str, list[str]]:
    return found.groupby("product_id")["neighbour_id"].apply(list).to_dict()


def test_products_alike_in_category_brand_price_and_words_come_first():
    found = similar_products(SHOP, SETTINGS)
    near = neighbours(found)
    # p2: same category, brand, price band and words; p3: same category; p4: only a price band in common
    assert near["p1"] == ["p2", "p3", "p4"]
    assert "p5" not in near and "p5" not in set(found.neighbour_id)
    assert all(p not in n for p, n in near.items())  # never its own neighbour
    assert (found.similarity > 0).all() and (found.similarity <= 1 + 1e-9).all()
    assert found.groupby("product_id").size().max() <= SETTINGS.neighbours


def test_similarity_is_the_weighted_mean_of_per_attribute_cosines():
    only_category = ContentBasedSettings(attributes=AttributeWeights(category=1.0, brand=0.0, price_band=0.0, text=0.0))
    found = similar_products(SHOP, only_category).set_index(["product_id", "neighbour_id"]).similarity
    assert found[("p1", "p3")] == pytest.approx(1.0) and ("p1", "p4") not in found.index
    # category 1 + brand 1 (shared by p1, p2), nothing else weighted: (1 * 1 + 1 * 1) / 2
    category_and_brand = ContentBasedSettings(attributes=AttributeWeights(category=1.0, brand=1.0, price_band=0.0, text=0.0))
    both = similar_products(SHOP, category_and_brand).set_index(["product_id", "neighbour_id"]).similarity
    assert both[("p1", "p2")] == pytest.approx(1.0)
    assert both[("p1", "p3")] == pytest.approx(1 / 2)  # same category, other brand: cos = 1 / (sqrt 2 * sqrt 2)


def test_price_bands_are_quantiles_within_the_category():
    bands = price_bands(SHOP, 2)
    assert bands.tolist()[:4] == [1, 1, 0, 1] and pd.isna(bands.iloc[4])


def test_ties_break_by_product_id_whatever_the_catalog_order():
    twins = catalog([(f"p{i}", "Same Name", "home", 10.0, None, None) for i in (3, 1, 2, 4)])
    near = neighbours(similar_products(twins, ContentBasedSettings(neighbours=2)))
    assert near == {"p1": ["p2", "p3"], "p2": ["p1", "p3"], "p3": ["p1", "p2"], "p4": ["p1", "p2"]}


def test_a_catalog_without_words_or_brands_still_works():
    bare = catalog([("a", None, "home", 10.0, None, None), ("b", None, "home", 12.0, None, None), ("c", None, None, None, None, None)])
    assert product_vectors(bare, SETTINGS).shape[0] == 3
    assert neighbours(similar_products(bare, SETTINGS)) == {"a": ["b"], "b": ["a"]}
    assert similar_products(bare.iloc[:1], SETTINGS).empty


def test_every_attribute_weight_zero_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="every weight is 0.*content_based.weight: 0"):
        ContentBasedSettings(attributes=AttributeWeights(category=0, brand=0, price_band=0, text=0))
