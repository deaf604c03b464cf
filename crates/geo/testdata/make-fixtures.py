#!/usr/bin/env python3
"""Writes the small MMDB fixtures of the geolocation tests (documentation ranges only).

Needs PyPI mmdb-writer==0.2.7. The outputs are committed; run again only to change them.
"""
from mmdb_writer import MMDBWriter, MmdbF64, MmdbU16, MmdbU32
from netaddr import IPSet

CITIES = [
    ("192.0.2.0/25", "Berlin", "DE", "Germany", 52.5200, 13.4050, "Europe/Berlin", 20),
    ("192.0.2.128/25", "Paris", "FR", "France", 48.8566, 2.3522, "Europe/Paris", 20),
    ("198.51.100.0/24", "New York", "US", "United States", 40.7128, -74.0060, "America/New_York", 50),
    ("203.0.113.0/24", "Sydney", "AU", "Australia", -33.8688, 151.2093, "Australia/Sydney", 50),
    ("2001:db8::/33", "Tokyo", "JP", "Japan", 35.6762, 139.6503, "Asia/Tokyo", 100),
    ("2001:db8:8000::/33", "Sao Paulo", "BR", "Brazil", -23.5505, -46.6333, "America/Sao_Paulo", 100),
]
ASNS = [
    ("192.0.2.0/25", 64500, "Example Broadband"),
    ("192.0.2.128/25", 64501, "Example Transit"),
    ("198.51.100.0/24", 64510, "Example Hosting"),
    ("203.0.113.0/24", 64520, "Example Mobile"),
]
DESCRIPTION = {"en": "synthetic test data (documentation ranges only)"}


def writer(kind):
    return MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind,
                      languages=["en"], description=DESCRIPTION)


w = writer("Test-GeoLite2-City")
for net, city, cc, country, lat, lon, tz, acc in CITIES:
    w.insert_network(IPSet([net]), {
        "city": {"names": {"en": city}},
        "country": {"iso_code": cc, "names": {"en": country}},
        "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon), "time_zone": tz,
                     "accuracy_radius": MmdbU16(acc)},
    })
w.to_db_file("test-city.mmdb")

w = writer("Test-DBIP-City-Lite")
for net, city, cc, country, lat, lon, _tz, _acc in CITIES:
    w.insert_network(IPSet([net]), {
        "city": {"names": {"en": city}},
        "continent": {"code": "XX", "names": {"en": "Test"}},
        "country": {"iso_code": cc, "names": {"en": country}},
        "location": {"latitude": MmdbF64(lat), "longitude": MmdbF64(lon)},
        "subdivisions": [{"names": {"en": "Test"}}],
    })
w.to_db_file("test-dbip-city.mmdb")

w = writer("Test-GeoLite2-ASN")
for net, asn, org in ASNS:
    w.insert_network(IPSet([net]), {"autonomous_system_number": MmdbU32(asn),
                                    "autonomous_system_organization": org})
w.to_db_file("test-asn.mmdb")

w = writer("Test-ipinfo-lite")
for (net, _city, cc, country, *_), (_, asn, org) in zip(CITIES, ASNS):
    w.insert_network(IPSet([net]), {"country_code": cc, "country": country, "continent": "Test",
                                    "asn": f"AS{asn}", "as_name": org, "as_domain": "example.net"})
w.to_db_file("test-ipinfo-lite.mmdb")
