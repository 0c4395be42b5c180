"""The synthetic product catalog: ~200 products over CATEGORIES with log-normal prices."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate, product as cartesian

import numpy as np

from lakecdp.generate.settings import CATALOG_STREAM, CATEGORIES, CURRENCY, random_stream

PRODUCTS_PER_CATEGORY = 25
IN_STOCK_SHARE = 0.92

# Median price (USD) and log-sd per category; accessories and home have the widest spread
# (a keyring and a lamp share a category), outerwear is the priciest.
CATEGORY_PRICING = {
    "shoes": (85.0, 0.40),
    "outerwear": (150.0, 0.45),
    "dresses": (70.0, 0.40),
    "accessories": (30.0, 0.65),
    "beauty": (24.0, 0.50),
    "home": (45.0, 0.65),
    "kids": (25.0, 0.40),
    "sportswear": (50.0, 0.40),
}
CATEGORY_NAMING = {
    "shoes": (("Classic", "Trail", "Urban", "Leather", "Canvas", "Cloud"), ("Sneaker", "Boot", "Loafer", "Sandal", "Runner", "Mule")),
    "outerwear": (
        ("Alpine", "City", "Quilted", "Wool", "Storm", "Harbor"),
        ("Parka", "Trench", "Puffer", "Blazer", "Rain Jacket", "Overcoat"),
    ),
    "dresses": (
        ("Linen", "Silk", "Wrap", "Floral", "Satin", "Knit"),
        ("Midi Dress", "Maxi Dress", "Shirt Dress", "Slip Dress", "Sundress", "Gown"),
    ),
    "accessories": (
        ("Woven", "Leather", "Gold-Tone", "Suede", "Canvas", "Minimal"),
        ("Belt", "Tote", "Scarf", "Wallet", "Watch", "Sunglasses"),
    ),
    "beauty": (
        ("Hydrating", "Matte", "Glow", "Velvet", "Daily", "Repair"),
        ("Serum", "Lipstick", "Cleanser", "Moisturizer", "Palette", "Mask"),
    ),
    "home": (("Ceramic", "Oak", "Linen", "Marble", "Rattan", "Brass"), ("Vase", "Lamp", "Throw", "Candle", "Tray", "Cushion")),
    "kids": (
        ("Tiny", "Rainbow", "Cozy", "Explorer", "Jersey", "Dino"),
        ("Hoodie", "Pajama Set", "Sneaker", "Raincoat", "Backpack", "Romper"),
    ),
    "sportswear": (
        ("Pro", "Flex", "Aero", "Core", "Trail", "Studio"),
        ("Leggings", "Running Tee", "Track Jacket", "Sports Bra", "Shorts", "Hoodie"),
    ),
}
SEARCH_TERMS = {
    "shoes": ("sneakers", "white sneakers", "chelsea boots", "running shoes", "sandals"),
    "outerwear": ("rain jacket", "winter coat", "puffer", "trench coat", "wool coat"),
    "dresses": ("midi dress", "summer dress", "black dress", "wrap dress", "party dress"),
    "accessories": ("leather belt", "tote bag", "sunglasses", "silk scarf", "watch"),
    "beauty": ("serum", "red lipstick", "moisturizer", "spf", "face mask"),
    "home": ("scented candle", "table lamp", "vase", "throw blanket", "cushion"),
    "kids": ("kids hoodie", "kids raincoat", "pajamas", "school backpack", "romper"),
    "sportswear": ("leggings", "running tee", "sports bra", "gym shorts", "track jacket"),
}


@dataclass(frozen=True)
class Product:
    product_id: str
    sku: str
    name: str
    category: str
    price: float
    in_stock: bool
    popularity: float

    def properties(self) -> dict:
        """The product fields of a Segment ecommerce v2 event."""
        return {
            "product_id": self.product_id,
            "sku": self.sku,
            "category": self.category,
            "name": self.name,
            "price": self.price,
            "currency": CURRENCY,
        }

    def catalog_row(self) -> dict:
        return {
            "product_id": self.product_id,
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "price": self.price,
            "in_stock": self.in_stock,
        }


class Catalog:
    """Products by category, with price-taste-weighted picking."""

    def __init__(self, products: list[Product]) -> None:
        self.products = tuple(products)
        self.by_category = {category: tuple(p for p in products if p.category == category) for category in CATEGORIES}
        self._cumulative_weights: dict[tuple[str, float], list[float]] = {}

    def pick(self, rng: np.random.Generator, category: str, price_taste: float) -> Product:
        """A product of the category; price_taste < 0 favours cheap items, > 0 premium ones."""
        key = (category, price_taste)
        cumulative = self._cumulative_weights.get(key)
        if cumulative is None:
            shelf = self.by_category[category]
            cumulative = list(accumulate(p.popularity * p.price**price_taste for p in shelf))
            self._cumulative_weights[key] = cumulative
        position = bisect_right(cumulative, rng.random() * cumulative[-1])
        return self.by_category[category][min(position, len(cumulative) - 1)]


def build_catalog(seed: int) -> Catalog:
    """The catalog for a seed: PRODUCTS_PER_CATEGORY products in each category."""
    rng = random_stream(seed, CATALOG_STREAM)
    products: list[Product] = []
    for category in CATEGORIES:
        products.extend(_stock_category(rng, category, first_number=len(products) + 1))
    return Catalog(products)


def _stock_category(rng: np.random.Generator, category: str, first_number: int) -> list[Product]:
    median, log_sd = CATEGORY_PRICING[category]
    adjectives, nouns = CATEGORY_NAMING[category]
    all_names = [f"{adjective} {noun}" for adjective, noun in cartesian(adjectives, nouns)]
    names = rng.choice(all_names, size=PRODUCTS_PER_CATEGORY, replace=False)
    prices = rng.lognormal(np.log(median), log_sd, size=PRODUCTS_PER_CATEGORY)
    # A few best sellers take most of the views, as on any real shop.
    popularity = rng.lognormal(0.0, 0.8, size=PRODUCTS_PER_CATEGORY)
    in_stock = rng.random(PRODUCTS_PER_CATEGORY) < IN_STOCK_SHARE
    return [
        Product(
            product_id=f"prod_{first_number + offset:04d}",
            sku=f"{category[:3].upper()}-{offset + 1:04d}",
            name=str(names[offset]),
            category=category,
            price=_shelf_price(float(prices[offset])),
            in_stock=bool(in_stock[offset]),
            popularity=float(popularity[offset]),
        )
        for offset in range(PRODUCTS_PER_CATEGORY)
    ]


def _shelf_price(raw_price: float) -> float:
    """Retail-style price ending in .99, never below 2.99."""
    return round(max(3.0, round(raw_price)) - 0.01, 2)


def search_terms(category: str) -> tuple[str, ...]:
    return SEARCH_TERMS[category]
