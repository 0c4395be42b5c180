"""Content-based similarity: products alike in category, brand, price band and words, by scikit-learn.

Each attribute becomes a block of a sparse vector (one-hot category and brand, a price band with
half weight on its neighbouring bands, TF-IDF of name, tags and description words); each block is
scaled to unit length times sqrt(its weight), so the cosine of two products is the weighted mean of
their per-attribute cosines over the attributes both have. The catalog is small next to the events
(hundreds to ~100k products): it is collected to the driver, and the cosines are computed in row
chunks that keep the dense block under CHUNK_CELLS.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, functions as F
from scipy import sparse
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from lakecdp.content.settings import ContentBasedSettings

# Optional catalog columns the vectors read when a catalog has them.
ATTRIBUTE_COLUMNS = ("brand", "tags", "description")
SIMILAR_PRODUCTS_SCHEMA = "product_id string, neighbour_id string, similarity double"
# Words of two letters or more; numbers (sizes, years) say little about likeness.
WORD = r"(?u)\b[^\W\d_]{2,}\b"
# ~160 MB of float64 per chunk of the similarity matrix.
CHUNK_CELLS = 20_000_000


def price_bands(products: pd.DataFrame, bands: int) -> pd.Series:
    """0 (cheapest) .. bands-1 (priciest) by price quantile within the product's category; <NA> without a price."""
    percentile = products.groupby(products["category"].fillna(""), sort=False)["price"].rank(pct=True, method="average")
    return np.minimum(np.ceil(percentile * bands) - 1, bands - 1).astype("Int64")


def product_vectors(products: pd.DataFrame, settings: ContentBasedSettings) -> sparse.csr_matrix:
    """One unit-length row per product (in the frame's order); a product with no attribute gets a zero row."""
    weights = settings.attributes
    text = (
        products["name"].fillna("")
        + " "
        + _optional(products, "tags").str.replace(r"[,;|]", " ", regex=True)
        + " "
        + _optional(products, "description")
    )
    blocks = [
        (weights.category, _one_hot(products["category"], "category")),
        (weights.brand, _one_hot(_optional(products, "brand").replace("", None), "brand")),
        (weights.price_band, _banded(price_bands(products, settings.price_bands))),
        (weights.text, _tfidf(text)),
    ]
    used = [normalize(block) * np.sqrt(weight) for weight, block in blocks if weight > 0 and block.shape[1] > 0]
    return normalize(sparse.hstack(used, format="csr"))


def similar_products(products: pd.DataFrame, settings: ContentBasedSettings) -> pd.DataFrame:
    """(product_id, neighbour_id, similarity): each product's `neighbours` most similar others, similarity > 0."""
    # Sorted by id, so a stable sort breaks ties between equal similarities by product id.
    products = products.drop_duplicates("product_id").sort_values("product_id").reset_index(drop=True)
    if len(products) < 2:
        return pd.DataFrame({"product_id": [], "neighbour_id": [], "similarity": []})
    vectors = product_vectors(products, settings)
    ids = products["product_id"].to_numpy()
    count = len(ids)
    keep = min(settings.neighbours, count - 1)
    chunk = max(1, CHUNK_CELLS // count)
    frames = []
    for start in range(0, count, chunk):
        block = (vectors[start : start + chunk] @ vectors.T).toarray()
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = -1.0  # never its own neighbour
        order = np.argsort(-block, axis=1, kind="stable")[:, :keep]
        scores = np.take_along_axis(block, order, axis=1)
        frames.append(
            pd.DataFrame(
                {
                    "product_id": np.repeat(ids[start : start + block.shape[0]], keep),
                    "neighbour_id": ids[order].ravel(),
                    "similarity": scores.ravel(),
                }
            )
        )
    found = pd.concat(frames, ignore_index=True)
    return found[found["similarity"] > 0].reset_index(drop=True)


def similar_products_frame(catalog: DataFrame, settings: ContentBasedSettings) -> DataFrame:
    """similar_products over a Spark catalog (collected: one row per product), back as a Spark DataFrame."""
    columns = ["product_id", "name", "category", "price", *(c for c in ATTRIBUTE_COLUMNS if c in catalog.columns)]
    products = catalog.filter(F.col("product_id").isNotNull()).select(*columns).toPandas()
    found = similar_products(products, settings)
    spark: SparkSession = catalog.sparkSession
    return spark.createDataFrame(found if len(found) else [], SIMILAR_PRODUCTS_SCHEMA)


def _optional(products: pd.DataFrame, column: str) -> pd.Series:
    if column not in products.columns:
        return pd.Series("", index=products.index)
    return products[column].fillna("").astype(str)


def _one_hot(values: pd.Series, name: str) -> sparse.csr_matrix:
    records = [{} if pd.isna(v) else {f"{name}={str(v).strip().lower()}": 1.0} for v in values]
    return DictVectorizer().fit_transform(records).tocsr()


def _banded(bands: pd.Series) -> sparse.csr_matrix:
    """A price band counts fully, its neighbouring bands by half: one band apart is still close."""
    records = [{} if pd.isna(b) else {f"band={int(b) + d}": 1.0 - 0.5 * abs(d) for d in (-1, 0, 1)} for b in bands]
    return DictVectorizer().fit_transform(records).tocsr()


def _tfidf(text: pd.Series) -> sparse.csr_matrix:
    if not text.str.contains(WORD, regex=True).any():  # TfidfVectorizer refuses an empty vocabulary
        return sparse.csr_matrix((len(text), 0))
    return TfidfVectorizer(lowercase=True, sublinear_tf=True, token_pattern=WORD).fit_transform(text).tocsr()
