"""Where an address is: country, continent, a centroid, and the ASN.

The default lookup is ``geoip2fast`` (country and ASN data shipped inside the PyPI
package, the ``geoip`` extra); distances are between country centroids, so impossible
travel is judged country to country (two places in one country are 0 km apart). A
country missing from the centroid table below gives no place: the detectors then stay
silent rather than guess.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CENTROIDS", "GeoIp2Fast", "GeoLookup", "Place", "StaticGeo", "distance_km", "place_of"]


@dataclass(frozen=True, slots=True)
class Place:
    country: str
    continent: str
    lat: float
    lon: float
    asn: str | None = None


class GeoLookup(Protocol):
    def lookup(self, address: str) -> Place | None:
        """The place of ``address``, or ``None`` (private, unknown, unparsable)."""
        ...


# country: (continent, latitude, longitude) of its approximate centroid.
# fmt: off
CENTROIDS: dict[str, tuple[str, float, float]] = {
    "US": ("NA", 39.8, -98.6), "CA": ("NA", 56.1, -106.3), "MX": ("NA", 23.6, -102.6),
    "GT": ("NA", 15.8, -90.2), "CU": ("NA", 21.5, -77.8), "PA": ("NA", 8.5, -80.8),
    "CR": ("NA", 9.7, -83.8), "DO": ("NA", 18.7, -70.2), "JM": ("NA", 18.1, -77.3),
    "BR": ("SA", -14.2, -51.9), "AR": ("SA", -38.4, -63.6), "CL": ("SA", -35.7, -71.5),
    "CO": ("SA", 4.6, -74.3), "PE": ("SA", -9.2, -75.0), "VE": ("SA", 6.4, -66.6),
    "EC": ("SA", -1.8, -78.2), "UY": ("SA", -32.5, -55.8), "PY": ("SA", -23.4, -58.4),
    "BO": ("SA", -16.3, -63.6),
    "GB": ("EU", 54.0, -2.0), "IE": ("EU", 53.4, -8.2), "FR": ("EU", 46.2, 2.2),
    "DE": ("EU", 51.2, 10.5), "NL": ("EU", 52.1, 5.3), "BE": ("EU", 50.5, 4.5),
    "LU": ("EU", 49.8, 6.1), "CH": ("EU", 46.8, 8.2), "AT": ("EU", 47.5, 14.6),
    "IT": ("EU", 41.9, 12.6), "ES": ("EU", 40.5, -3.7), "PT": ("EU", 39.4, -8.2),
    "DK": ("EU", 56.3, 9.5), "NO": ("EU", 60.5, 8.5), "SE": ("EU", 60.1, 18.6),
    "FI": ("EU", 61.9, 25.7), "IS": ("EU", 64.9, -19.0), "PL": ("EU", 51.9, 19.1),
    "CZ": ("EU", 49.8, 15.5), "SK": ("EU", 48.7, 19.7), "HU": ("EU", 47.2, 19.5),
    "RO": ("EU", 45.9, 25.0), "BG": ("EU", 42.7, 25.5), "GR": ("EU", 39.1, 21.8),
    "HR": ("EU", 45.1, 15.2), "SI": ("EU", 46.2, 15.0), "RS": ("EU", 44.0, 21.0),
    "UA": ("EU", 48.4, 31.2), "BY": ("EU", 53.7, 28.0), "LT": ("EU", 55.2, 23.9),
    "LV": ("EU", 56.9, 24.6), "EE": ("EU", 58.6, 25.0), "MD": ("EU", 47.4, 28.4),
    "RU": ("EU", 61.5, 105.3), "TR": ("AS", 39.0, 35.2), "CY": ("AS", 35.1, 33.4),
    "IL": ("AS", 31.0, 34.9), "SA": ("AS", 23.9, 45.1), "AE": ("AS", 23.4, 53.8),
    "QA": ("AS", 25.4, 51.2), "IR": ("AS", 32.4, 53.7), "IQ": ("AS", 33.2, 43.7),
    "JO": ("AS", 30.6, 36.2), "KZ": ("AS", 48.0, 66.9), "PK": ("AS", 30.4, 69.3),
    "IN": ("AS", 20.6, 79.0), "BD": ("AS", 23.7, 90.4), "LK": ("AS", 7.9, 80.8),
    "NP": ("AS", 28.4, 84.1), "CN": ("AS", 35.9, 104.2), "HK": ("AS", 22.3, 114.2),
    "TW": ("AS", 23.7, 121.0), "JP": ("AS", 36.2, 138.3), "KR": ("AS", 35.9, 127.8),
    "KP": ("AS", 40.3, 127.5), "MN": ("AS", 46.9, 103.8), "VN": ("AS", 14.1, 108.3),
    "TH": ("AS", 15.9, 101.0), "MY": ("AS", 4.2, 102.0), "SG": ("AS", 1.35, 103.8),
    "ID": ("AS", -0.8, 113.9), "PH": ("AS", 12.9, 121.8), "KH": ("AS", 12.6, 105.0),
    "MM": ("AS", 21.9, 95.96), "AU": ("OC", -25.3, 133.8), "NZ": ("OC", -40.9, 174.9),
    "FJ": ("OC", -17.7, 178.1), "PG": ("OC", -6.3, 143.96),
    "ZA": ("AF", -30.6, 22.9), "NG": ("AF", 9.1, 8.7), "EG": ("AF", 26.8, 30.8),
    "KE": ("AF", -0.02, 37.9), "ET": ("AF", 9.1, 40.5), "MA": ("AF", 31.8, -7.1),
    "DZ": ("AF", 28.0, 1.7), "TN": ("AF", 33.9, 9.5), "GH": ("AF", 7.9, -1.0),
    "CI": ("AF", 7.5, -5.5), "SN": ("AF", 14.5, -14.5), "TZ": ("AF", -6.4, 34.9),
    "UG": ("AF", 1.4, 32.3), "AO": ("AF", -11.2, 17.9), "CM": ("AF", 7.4, 12.4),
    "CD": ("AF", -4.0, 21.8), "ZW": ("AF", -19.0, 29.2), "ZM": ("AF", -13.1, 27.8),
}
# fmt: on


def distance_km(a: Place, b: Place) -> float:
    """Great-circle distance between two places (haversine, mean Earth radius)."""
    la1, lo1, la2, lo2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


@functools.lru_cache(maxsize=4096)
def place_of(country: str, asn: str | None = None) -> Place | None:
    """The place of a country's centroid (cached: a :class:`Place` is immutable)."""
    found = CENTROIDS.get(country.upper())
    if found is None:
        return None
    return Place(country.upper(), found[0], found[1], found[2], asn)


class StaticGeo:
    """A fixed address → (country, ASN) table; for tests and for private networks."""

    def __init__(self, table: dict[str, tuple[str, str | None]]) -> None:
        self._table = table

    def lookup(self, address: str) -> Place | None:
        entry = self._table.get(address)
        return place_of(*entry) if entry is not None else None


class GeoIp2Fast:
    """The ``geoip2fast`` country + ASN database (loaded on first use, about 0.2 s).

    Lookups are cached by address (at most ``cache_size``; the oldest go first): a
    caller's address repeats call after call, and a place is immutable.

    Raises:
        ImportError: the ``geoip`` extra is not installed (at construction).
    """

    def __init__(self, *, cache_size: int = 8192) -> None:
        import geoip2fast  # noqa: F401 - fail at start-up, not on the first call

        self._db: Any = None
        self._lock = threading.Lock()
        self._cache: dict[str, Place | None] = {}
        self._cache_size = cache_size

    def load(self) -> None:
        with self._lock:
            if self._db is None:
                from geoip2fast import GeoIP2Fast

                self._db = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz")

    def lookup(self, address: str) -> Place | None:
        cache = self._cache
        if address in cache:
            return cache[address]
        place = self._lookup(address)
        if len(cache) >= self._cache_size:
            del cache[next(iter(cache))]  # the oldest entry (dicts keep insertion order)
        cache[address] = place
        return place

    def _lookup(self, address: str) -> Place | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if not ip.is_global:
            return None
        if self._db is None:
            self.load()
        found = self._db.lookup(str(ip))
        country = getattr(found, "country_code", "") or ""
        if len(country) != 2:
            return None
        return place_of(country, getattr(found, "asn_name", None) or None)
