"""The spend (GMV) proxy. The Foursquare data has no prices, so every money figure in this
project is a *proxy* defined here, deterministically, from the venue category:

    spend(category) = a typical ticket in USD for one visit of that kind of place
                      (0 for places where nothing is bought: homes, offices, roads ...)

The table below is our own rough estimate of a typical NYC ticket (2012 prices), keyed by
keyword rules tried in order; it is a documented modelling choice, not data. An order's
amount is this spend, scaled by a deterministic factor in [0.8, 1.2] drawn from a hash of
the order id so that amounts vary like real tickets while staying reproducible. The POI's
``price_level`` (0..4) buckets its category spend.
"""

from __future__ import annotations

import hashlib

# (keyword in the category name, typical spend in USD), first match wins.
_RULES: list[tuple[str, float]] = [
    ("Home (private)", 0.0), ("Residential", 0.0), ("Housing", 0.0), ("Office", 0.0),
    ("Neighborhood", 0.0), ("Road", 0.0), ("Bridge", 0.0), ("City", 0.0), ("Plaza", 0.0),
    ("Building", 0.0), ("Church", 0.0), ("Synagogue", 0.0), ("Temple", 0.0), ("Shrine", 0.0),
    ("Spiritual", 0.0), ("Cemetery", 0.0), ("River", 0.0), ("Moving Target", 0.0),
    ("Military", 0.0), ("Rest Area", 0.0), ("Public Art", 0.0), ("Funeral", 0.0),
    ("School", 0.0), ("College", 0.0), ("University", 0.0), ("Student Center", 0.0),
    ("Library", 0.0), ("Government", 0.0), ("Post Office", 2.0), ("Bank", 0.0),
    ("Park", 0.0), ("Great Outdoors", 0.0), ("Playground", 0.0), ("Beach", 0.0), ("Garden Center", 35.0),
    ("Garden", 0.0), ("Scenic", 0.0), ("Historic", 5.0), ("Harbor", 10.0), ("Outdoors", 0.0),
    ("Subway", 2.25), ("Bus", 2.25), ("Light Rail", 2.25), ("Train Station", 12.0), ("Ferry", 5.0),
    ("Taxi", 15.0), ("Airport", 40.0), ("Travel Lounge", 30.0), ("Travel", 20.0), ("Parking", 20.0),
    ("Gas Station", 45.0),
    ("Steakhouse", 70.0), ("Molecular Gastronomy", 120.0), ("French", 55.0), ("Sushi", 45.0),
    ("Italian", 40.0), ("Seafood", 45.0), ("Tapas", 40.0), ("Japanese", 40.0), ("Scandinavian", 45.0),
    ("Swiss", 45.0), ("Brazilian", 40.0), ("Spanish", 40.0), ("Mediterranean", 35.0),
    ("Restaurant", 28.0), ("Gastropub", 30.0), ("BBQ", 25.0), ("Diner", 18.0), ("Breakfast", 16.0),
    ("Burger", 14.0), ("Pizza", 10.0), ("Fast Food", 9.0), ("Fried Chicken", 10.0), ("Wings", 14.0),
    ("Burrito", 10.0), ("Taco", 9.0), ("Sandwich", 10.0), ("Salad", 12.0), ("Soup", 10.0),
    ("Ramen", 16.0), ("Dumpling", 12.0), ("Dim Sum", 25.0), ("Falafel", 8.0), ("Hot Dog", 6.0),
    ("Mac & Cheese", 12.0), ("Food Truck", 9.0), ("Snack", 6.0), ("Deli", 8.0), ("Bagel", 6.0),
    ("Bakery", 8.0), ("Donut", 4.0), ("Cupcake", 6.0), ("Dessert", 9.0), ("Ice Cream", 6.0),
    ("Candy", 8.0), ("Coffee", 5.0), ("Café", 8.0), ("Tea Room", 10.0),
    ("Beer Garden", 30.0), ("Brewery", 30.0), ("Bar", 32.0), ("Nightlife", 35.0), ("Comedy", 30.0),
    ("Music Venue", 35.0), ("Concert", 60.0), ("Performing Arts", 70.0), ("Theater", 80.0),
    ("Movie", 14.0), ("Stadium", 60.0), ("Racetrack", 40.0), ("Casino", 80.0), ("Arcade", 15.0),
    ("Bowling", 30.0), ("Pool Hall", 20.0), ("Museum", 20.0), ("Art Gallery", 10.0), ("Zoo", 20.0),
    ("Aquarium", 25.0), ("Sculpture", 10.0), ("Fair", 20.0), ("Event Space", 40.0), ("Convention", 40.0),
    ("Entertainment", 25.0), ("Arts", 20.0), ("Athletic", 20.0), ("Gym", 15.0), ("Spa", 90.0),
    ("Salon", 35.0), ("Tanning", 25.0), ("Tattoo", 120.0), ("Campground", 30.0), ("Hotel", 220.0),
    ("Food & Drink Shop", 25.0), ("Market", 25.0), ("Convenience", 10.0), ("Drugstore", 20.0),
    ("Department Store", 75.0), ("Mall", 60.0), ("Clothing", 60.0), ("Electronics", 150.0),
    ("Mobile Phone", 120.0), ("Camera", 200.0), ("Jewelry", 200.0), ("Bridal", 400.0),
    ("Furniture", 250.0), ("Hardware", 40.0), ("Bookstore", 25.0), ("Music Store", 25.0),
    ("Sporting Goods", 60.0), ("Toy", 35.0), ("Hobby", 30.0), ("Arts & Crafts", 30.0),
    ("Cosmetics", 40.0), ("Smoke", 15.0), ("Pet", 35.0), ("Antique", 80.0), ("Thrift", 25.0),
    ("Flea", 20.0), ("Gift", 25.0), ("Paper", 20.0), ("Automotive", 150.0), ("Laundry", 15.0),
    ("Medical", 60.0), ("Financial", 100.0), ("Design Studio", 50.0), ("Animal Shelter", 0.0),
    ("Recycling", 0.0), ("Factory", 0.0), ("Shop", 30.0), ("Food", 12.0),
]

DEFAULT_SPEND = 10.0  # categories no rule matches, and POIs without a category
CURRENCY = "USD"


def category_spend(category: str | None) -> float:
    """Typical spend (USD) of one visit to a place of this category (the GMV proxy)."""
    if category:
        for keyword, spend in _RULES:
            if keyword in category:
                return spend
    return DEFAULT_SPEND


def price_level(category: str | None) -> int:
    """0 (free) .. 4 (expensive) bucket of the category spend."""
    s = category_spend(category)
    for level, upper in enumerate((0.0, 10.0, 30.0, 80.0)):
        if s <= upper:
            return level
    return 4


def order_amount(order_id: str, category: str | None) -> float:
    """Deterministic order amount: category spend x a factor in [0.8, 1.2] from the order id's hash."""
    h = int.from_bytes(hashlib.blake2b(order_id.encode(), digest_size=8).digest(), "big")
    factor = 0.8 + 0.4 * (h / 2**64)
    return round(category_spend(category) * factor, 2)
