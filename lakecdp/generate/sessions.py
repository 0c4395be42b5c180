"""Shopping sessions: when they happen in local time, and the burst of events each one makes."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np

from lakecdp.generate.catalog import Catalog, Product, search_terms
from lakecdp.generate.draws import between, chance, one_of, pick, short_id
from lakecdp.generate.local_time import local_days, shopping_moment_ms
from lakecdp.generate.messages import CustomerJournal, device_context
from lakecdp.generate.population import Customer, Device, session_device
from lakecdp.generate.settings import CATEGORIES, CURRENCY, SHOP_URL, GeneratorSettings

WEEKEND_LIFT = 1.25
GAP_BETWEEN_OVERLAPPING_SESSIONS_MS = 120_000
CART_EXPIRY_MS = 10 * 86_400_000
CATEGORY_STICKINESS = 0.55
REIDENTIFY_RATE = 0.06
ANONYMOUS_LOGIN_RATE = 0.40
REMOVE_FROM_CART_RATE = 0.12
CART_REVIEW_RATE = 0.30
CHECKOUT_ABANDON_RATE = 0.30
FREE_SHIPPING_FROM = 50.0
SHIPPING_FEE = 4.95
COUPONS = {"SAVE10": 0.10, "WELCOME15": 0.15, "FLASH20": 0.20}
LANDING_PAGES = (("Home", 0.60), ("Category", 0.25), ("Search", 0.15))


@dataclass
class ShopperState:
    """What carries over between a customer's sessions: the open cart and first login."""

    cart_id: str | None = None
    cart: dict[str, list] = field(default_factory=dict)  # product_id -> [Product, quantity]
    cart_touched_ms: int = 0
    has_identified: bool = False


@dataclass(frozen=True)
class SessionStart:
    at_ms: int
    landing_category: str | None = None  # set when the visit comes from an email click
    landing_campaign: str | None = None
    device: Device | None = None


def plan_session_starts(rng: np.random.Generator, customer: Customer, settings: GeneratorSettings) -> list[SessionStart]:
    """Session start times: Poisson per local day, hours from the local daytime curve."""
    zone = ZoneInfo(customer.timezone)
    days = local_days(settings.start, settings.end, zone)
    rates = [customer.sessions_per_day * (WEEKEND_LIFT if d.weekday() >= 5 else 1.0) for d in days]
    starts = []
    if customer.behaviour_type == "new_explorer":
        starts.append(SessionStart(at_ms=customer.active_from_ms))  # the visit they sign up in
    for local_day, count in zip(days, rng.poisson(rates)):
        for _ in range(int(count)):
            at_ms = shopping_moment_ms(rng, local_day, zone)
            if customer.active_from_ms < at_ms < customer.active_until_ms:
                starts.append(SessionStart(at_ms=at_ms))
    return starts


def run_sessions(
    rng: np.random.Generator,
    journal: CustomerJournal,
    customer: Customer,
    catalog: Catalog,
    starts: list[SessionStart],
    settings: GeneratorSettings,
) -> None:
    """Plays the customer's sessions in time order, carrying the cart between them."""
    state = ShopperState()
    free_from_ms = 0
    for start in sorted(starts, key=lambda s: s.at_ms):
        # One person browses in one session at a time: a second start inside a running
        # session (e.g. an email click mid-visit) begins right after it instead.
        at_ms = max(start.at_ms, free_from_ms)
        session = ShoppingSession(rng, journal, customer, catalog, state, start, at_ms, settings)
        free_from_ms = session.play() + GAP_BETWEEN_OVERLAPPING_SESSIONS_MS


class ShoppingSession:
    """One visit: pages and ecommerce events minutes apart, maybe a login, maybe an order."""

    def __init__(
        self,
        rng: np.random.Generator,
        journal: CustomerJournal,
        customer: Customer,
        catalog: Catalog,
        state: ShopperState,
        start: SessionStart,
        at_ms: int,
        settings: GeneratorSettings,
    ) -> None:
        self.rng = rng
        self.journal = journal
        self.customer = customer
        self.profile = customer.profile
        self.catalog = catalog
        self.state = state
        self.start = start
        self.clock_ms = at_ms
        self.device = start.device or session_device(rng, customer)
        is_first_visit = customer.behaviour_type == "new_explorer" and not state.has_identified
        self.is_anonymous = is_first_visit or chance(rng, settings.anonymous_share)
        self.user_id = None if self.is_anonymous else customer.customer_id
        self.category: str | None = None
        self.last_viewed_in_stock: Product | None = None

    def play(self) -> int:
        """Emits the session's events; returns when it ended."""
        product_views = max(1, int(self.rng.poisson(self.customer.views_per_session)))
        will_order = chance(self.rng, self.customer.purchase_propensity)
        login_step = self._login_step(product_views, will_order)
        self._expire_stale_cart()
        if not self.is_anonymous and (not self.state.has_identified or chance(self.rng, REIDENTIFY_RATE)):
            self._identify()
        self._land()
        for step in range(product_views):
            if step == login_step:
                self._log_in()
            self._browse_one_product()
        if self.state.cart and chance(self.rng, REMOVE_FROM_CART_RATE):
            self._remove_from_cart()
        if will_order:
            self._check_out_and_order()
        elif self.state.cart and chance(self.rng, CART_REVIEW_RATE):
            self._review_cart_and_leave()
        return self.clock_ms

    def _login_step(self, product_views: int, will_order: bool) -> int | None:
        """When an anonymous visitor logs in: never, mid-browse, or (if ordering) by checkout."""
        if not self.is_anonymous:
            return None
        is_signing_up = self.customer.behaviour_type == "new_explorer" and not self.state.has_identified
        must_log_in = will_order or is_signing_up
        if must_log_in or chance(self.rng, ANONYMOUS_LOGIN_RATE):
            return between(self.rng, 0, product_views)
        return None

    def _expire_stale_cart(self) -> None:
        if self.state.cart and self.clock_ms - self.state.cart_touched_ms > CART_EXPIRY_MS:
            self.state.cart.clear()
            self.state.cart_id = None

    # --- envelope -------------------------------------------------------------------------

    def _envelope(self) -> dict:
        return {
            "user_id": self.user_id,
            "anonymous_id": self.device.anonymous_id,
            "context": device_context(self.customer, self.device),
        }

    def _track(self, at_ms: int, event: str, properties: dict) -> None:
        self.journal.track(at_ms, event, properties, **self._envelope())

    def _open_page(self, name: str, path: str, title: str, category: str | None = None, dwell_median_s: float = 30.0) -> int:
        """Emits a page view at the session clock and moves the clock past the visitor's dwell."""
        page_ms = self.clock_ms
        dwell_s = max(3.0, float(self.rng.lognormal(np.log(dwell_median_s), 0.6)))
        properties = {
            "url": f"{SHOP_URL}{path}",
            "path": path.split("?")[0],
            "title": f"{title} | Example Shop",
            "time_on_page_s": round(dwell_s, 1),
            "scroll_depth_pct": int(min(100, max(0, self.rng.normal(35 + dwell_s, 20)))),
        }
        if category is not None:
            properties["category"] = category
        self.journal.page(page_ms, name, properties, **self._envelope())
        self.clock_ms = page_ms + int(dwell_s * 1000)
        return page_ms

    def _soon_after(self, page_ms: int) -> int:
        """A moment shortly after a page rendered, for the track event that page fires."""
        return page_ms + between(self.rng, 100, 1500)

    # --- identity -------------------------------------------------------------------------

    def _identify(self) -> None:
        customer = self.customer
        traits = {
            "email": customer.email,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "city": customer.city,
            "country": customer.country,
            "timezone": customer.timezone,
        }
        self.journal.identify(self.clock_ms, traits, **self._envelope())
        self.state.has_identified = True
        self.clock_ms += between(self.rng, 300, 2000)

    def _log_in(self) -> None:
        if self.user_id is not None:
            return
        self.clock_ms += between(self.rng, 5_000, 25_000)  # typing credentials
        self.user_id = self.customer.customer_id
        self._identify()

    # --- browsing -------------------------------------------------------------------------

    def _land(self) -> None:
        if self.start.landing_category is not None:
            campaign = self.start.landing_campaign
            path = f"/c/{self.start.landing_category}?utm_source=email&utm_campaign={campaign}"
            self._open_category(self.start.landing_category, path)
            return
        landing = pick(self.rng, LANDING_PAGES)
        if landing == "Category":
            self._open_category(self._next_category(), None)
        elif landing == "Search":
            self._search(self._next_category())
        else:
            self._open_page("Home", "/", "Home", dwell_median_s=15.0)

    def _next_category(self) -> str:
        if self.category is not None and chance(self.rng, CATEGORY_STICKINESS):
            return self.category
        if chance(self.rng, self.profile.favourite_focus):
            return one_of(self.rng, self.customer.favourite_categories)
        return one_of(self.rng, CATEGORIES)

    def _open_category(self, category: str, path: str | None) -> None:
        self._open_page("Category", path or f"/c/{category}", category.title(), category, 20.0)
        self.category = category

    def _search(self, category: str) -> None:
        query = one_of(self.rng, search_terms(category))
        page_ms = self._open_page("Search", f"/search?q={query.replace(' ', '+')}", "Search", None, 12.0)
        self._track(self._soon_after(page_ms), "Products Searched", {"query": query})
        self.category = category

    def _browse_one_product(self) -> None:
        category = self._next_category()
        if category != self.category:
            if chance(self.rng, self.profile.search_rate):
                self._search(category)
            else:
                self._open_category(category, None)
        product = self.catalog.pick(self.rng, category, self.profile.price_taste)
        page_ms = self._open_page("Product", f"/p/{product.product_id}", product.name, category, 40.0)
        self._track(self._soon_after(page_ms), "Product Viewed", product.properties())
        if not product.in_stock:
            return
        self.last_viewed_in_stock = product
        if chance(self.rng, self.customer.add_to_cart_rate):
            self._add_to_cart(product, at_ms=(page_ms + self.clock_ms) // 2)

    # --- cart and checkout ----------------------------------------------------------------

    def _add_to_cart(self, product: Product, at_ms: int) -> None:
        if self.state.cart_id is None:
            self.state.cart_id = short_id(self.rng, "cart")
        quantity = 2 if chance(self.rng, self.profile.second_unit_rate) else 1
        line = self.state.cart.setdefault(product.product_id, [product, 0])
        line[1] += quantity
        self.state.cart_touched_ms = at_ms
        properties = {**product.properties(), "quantity": quantity, "cart_id": self.state.cart_id}
        self._track(at_ms, "Product Added", properties)

    def _remove_from_cart(self) -> None:
        page_ms = self._open_page("Cart", "/cart", "Cart", dwell_median_s=25.0)
        product_id = one_of(self.rng, sorted(self.state.cart))
        product, quantity = self.state.cart.pop(product_id)
        self.state.cart_touched_ms = page_ms
        properties = {**product.properties(), "quantity": quantity, "cart_id": self.state.cart_id}
        self._track(self._soon_after(page_ms), "Product Removed", properties)

    def _basket(self) -> list[dict]:
        return [{"product_id": p.product_id, "category": p.category, "price": p.price, "quantity": q} for p, q in self.state.cart.values()]

    def _basket_value(self) -> float:
        return round(sum(p.price * q for p, q in self.state.cart.values()), 2)

    def _start_checkout(self) -> int:
        page_ms = self._open_page("Checkout", "/checkout", "Checkout", dwell_median_s=90.0)
        properties = {
            "cart_id": self.state.cart_id,
            "value": self._basket_value(),
            "currency": CURRENCY,
            "products": self._basket(),
        }
        self._track(self._soon_after(page_ms), "Checkout Started", properties)
        return page_ms

    def _review_cart_and_leave(self) -> None:
        self._open_page("Cart", "/cart", "Cart", dwell_median_s=25.0)
        if chance(self.rng, CHECKOUT_ABANDON_RATE):
            self._start_checkout()

    def _check_out_and_order(self) -> None:
        if not self.state.cart:
            # Decided to buy: the last thing they liked goes in the cart.
            product = self.last_viewed_in_stock or self.catalog.pick(
                self.rng, one_of(self.rng, self.customer.favourite_categories), self.profile.price_taste
            )
            self._add_to_cart(product, at_ms=self.clock_ms)
            self.clock_ms += between(self.rng, 2_000, 10_000)
        self._open_page("Cart", "/cart", "Cart", dwell_median_s=25.0)
        self._log_in()  # no guest checkout: an anonymous visitor signs in here at the latest
        self._start_checkout()
        self._track(self.clock_ms, "Order Completed", self._order_properties())
        self.clock_ms += between(self.rng, 1_000, 5_000)
        self.state.cart.clear()
        self.state.cart_id = None

    def _order_properties(self) -> dict:
        subtotal = self._basket_value()
        coupon = self._coupon()
        discount = round(subtotal * COUPONS[coupon], 2) if coupon else 0.0
        revenue = round(subtotal - discount, 2)
        shipping = 0.0 if revenue >= FREE_SHIPPING_FROM else SHIPPING_FEE
        return {
            "order_id": short_id(self.rng, "ord"),
            "cart_id": self.state.cart_id,
            "total": round(revenue + shipping, 2),
            "revenue": revenue,
            "shipping": shipping,
            "discount": discount,
            "coupon": coupon,
            "currency": CURRENCY,
            "products": self._basket(),
        }

    def _coupon(self) -> str | None:
        if not chance(self.rng, self.profile.coupon_rate):
            return None
        if self.customer.behaviour_type == "new_explorer":
            return "WELCOME15"
        if self.customer.behaviour_type == "bargain_hunter":
            return one_of(self.rng, ("FLASH20", "SAVE10"))
        return "SAVE10"
