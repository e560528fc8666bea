"""Geo commands: raw replies compared with redis-server 7.0 (RESP2 and RESP3:
scores, distances, coordinates, hashes, search order, errors), seeded random
searches over the whole globe, redis-py usage of every command, and the
geohash arithmetic itself."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import assume, given, settings, strategies as st

from storage import geohash
from tests.zcompare import Conn, Pair


@pytest.fixture
def pair(server, real):
    for port in (server.port, real.port):
        c = Conn(port)
        c.raw("FLUSHALL")
        c.close()
    p = Pair(server.port, real.port)
    yield p
    p.close()


def _seed_data(pair):
    pair.both("GEOADD", "Sicily", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669",
              "Catania")
    pair.both("GEOADD", "Sicily", "12.758489", "38.788135", "edge1", "17.241510", "38.788135", "edge2")
    pair.both("SET", "str", "x")
    rnd = random.Random(7)
    pts = []
    for i in range(300):
        pts += ["%.6f" % rnd.uniform(-180, 180), "%.6f" % rnd.uniform(-85, 85), "p%d" % i]
    pair.both("GEOADD", "world", *pts)
    pts = []
    for i in range(100):
        pts += ["%.6f" % rnd.uniform(12, 16), "%.6f" % rnd.uniform(36, 39), "s%d" % i]
    pair.both("GEOADD", "Sicily", *pts)
    # identical points: ties in distance keep Redis's scan order
    pair.both("GEOADD", "twins", "10", "10", "b", "10", "10", "a", "10", "10", "c", "10.01", "10", "d")
    # many equal distances: with COUNT Redis partially sorts with pqsort, whose
    # order for ties pynode reproduces
    crowd = []
    for i in range(120):
        crowd += ["%.4f" % (20 + (i % 5) * 0.01), "%.4f" % (20 + (i % 3) * 0.01), "c%03d" % i]
    pair.both("GEOADD", "crowd", *crowd)


SCRIPT = [
    ("GEOPOS", "Sicily", "Palermo", "Catania", "nope"), ("GEOPOS", "nokey", "a"), ("GEOPOS", "str", "a"),
    ("GEOHASH", "Sicily", "Palermo", "Catania", "nope"), ("GEOHASH", "nokey", "a"), ("GEOHASH", "str", "a"),
    ("GEODIST", "Sicily", "Palermo", "Catania"), ("GEODIST", "Sicily", "Palermo", "Catania", "km"),
    ("GEODIST", "Sicily", "Palermo", "Catania", "MI"), ("GEODIST", "Sicily", "Palermo", "Catania", "ft"),
    ("GEODIST", "Sicily", "Palermo", "nope"), ("GEODIST", "nokey", "a", "b"), ("GEODIST", "nokey", "a", "b", "xx"),
    ("GEODIST", "Sicily", "a", "b", "km", "x"), ("GEODIST", "str", "a", "b"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "WITHDIST", "WITHCOORD", "WITHHASH", "ASC"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "DESC", "COUNT", "3"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "COUNT", "3", "ANY"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "COUNT", "3", "ANY", "ASC"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "ANY"), ("GEORADIUS", "Sicily", "15", "37", "200", "km", "COUNT", "0"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "COUNT", "x"), ("GEORADIUS", "Sicily", "15", "37", "-1", "km"),
    ("GEORADIUS", "Sicily", "15", "37", "x", "km"), ("GEORADIUS", "Sicily", "15", "37", "1", "parsec"),
    ("GEORADIUS", "Sicily", "200", "37", "1", "km"), ("GEORADIUS", "Sicily", "15", "37", "200", "km", "FOO"),
    ("GEORADIUS", "nokey", "15", "37", "200", "km"), ("GEORADIUS", "str", "15", "37", "200", "km"),
    ("GEORADIUS", "str", "x", "37", "200", "km"), ("GEORADIUS", "Sicily", "1", "1", "1", "km", "STORE"),
    ("GEORADIUS", "Sicily", "1", "1", "1", "km", "COUNT"), ("GEORADIUS", "Sicily", "1", "1", "1", "km", "COUNT", "-5"),
    ("GEORADIUSBYMEMBER", "Sicily", "Palermo", "100", "km", "WITHDIST"),
    ("GEORADIUSBYMEMBER", "Sicily", "nope", "100", "km"), ("GEORADIUSBYMEMBER", "nokey", "nope", "x", "km"),
    ("GEORADIUSBYMEMBER", "Sicily", "nope", "x", "km"), ("GEORADIUSBYMEMBER", "Sicily", "Palermo", "x", "km"),
    ("GEORADIUSBYMEMBER", "Sicily", "Palermo", "1", "xx"),
    ("GEORADIUSBYMEMBER", "nokey", "nope", "100", "km", "STORE", "dst"),
    ("GEORADIUS_RO", "Sicily", "15", "37", "200", "km", "STORE", "x"),
    ("GEORADIUSBYMEMBER_RO", "Sicily", "Palermo", "50", "km", "WITHCOORD"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC", "WITHDIST"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "400", "400", "km", "ASC", "WITHCOORD", "WITHDIST"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYBOX", "400", "400", "km"),
    ("GEOSEARCH", "Sicily", "BYBOX", "400", "400", "km"), ("geosearch", "Sicily", "FROMMEMBER", "Palermo", "count", "1"),
    ("GeoSearch", "Sicily", "FROMMEMBER", "Palermo", "count", "1"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "nope", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "nokey", "FROMMEMBER", "nope", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "FROMLONLAT", "1", "1", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "1", "1", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "1", "km", "BYBOX", "1", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYBOX", "-1", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYBOX", "x", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYBOX", "1", "x", "km"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "100", "km", "STOREDIST"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "100", "km", "STORE", "x"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "COUNT", "5", "DESC", "WITHHASH"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "COUNT", "1", "ANY", "DESC", "WITHDIST"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "x", "1", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "Sicily", "FROMLONLAT", "1", "1", "BYRADIUS", "1"),
    ("GEOSEARCH", "Sicily", "FROMMEMBER", "Palermo", "FROMMEMBER", "Catania", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "str", "FROMMEMBER", "a", "BYRADIUS", "1", "km"),
    ("GEOSEARCHSTORE", "d", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "STORE", "x"),
    ("GEOSEARCHSTORE", "d", "Sicily", "FROMMEMBER", "Palermo", "BYRADIUS", "1", "km", "WITHCOORD"),
    ("GEOSEARCHSTORE", "d", "str", "FROMMEMBER", "a", "BYRADIUS", "1", "km"),
    ("GEOSEARCH", "world", "FROMLONLAT", "0", "0", "BYRADIUS", "5000", "km", "ASC", "WITHDIST"),
    ("GEOSEARCH", "world", "FROMLONLAT", "179", "84", "BYRADIUS", "3000", "km", "WITHDIST"),
    ("GEOSEARCH", "world", "FROMLONLAT", "-179", "-84", "BYBOX", "8000", "3000", "km", "WITHDIST"),
    ("GEOSEARCH", "world", "FROMLONLAT", "10", "10", "BYBOX", "20000", "20000", "km"),
    ("GEOSEARCH", "world", "FROMLONLAT", "10", "10", "BYRADIUS", "20000", "km", "WITHDIST"),
    ("GEOSEARCH", "world", "FROMLONLAT", "10", "10", "BYRADIUS", "0", "km", "WITHDIST"),
    ("GEOSEARCH", "world", "FROMLONLAT", "-180", "-85.05112878", "BYRADIUS", "500", "mi", "WITHCOORD"),
    ("GEOSEARCH", "twins", "FROMLONLAT", "10", "10", "BYRADIUS", "10", "km", "ASC", "WITHDIST"),
    ("GEOSEARCH", "twins", "FROMLONLAT", "10", "10", "BYRADIUS", "10", "km", "DESC"),
    ("GEOSEARCH", "twins", "FROMLONLAT", "10", "10", "BYRADIUS", "10", "km"),
    ("GEOSEARCH", "crowd", "FROMLONLAT", "20", "20", "BYRADIUS", "100", "km", "COUNT", "50"),
    ("GEOSEARCH", "crowd", "FROMLONLAT", "20.02", "20", "BYRADIUS", "100", "km", "COUNT", "7", "DESC"),
    ("GEOSEARCH", "crowd", "FROMLONLAT", "20", "20", "BYRADIUS", "100", "km", "COUNT", "119", "WITHDIST"),
    ("GEOSEARCH", "crowd", "FROMLONLAT", "20", "20", "BYRADIUS", "100", "km", "DESC", "WITHDIST"),
    ("GEORADIUS", "crowd", "20.01", "20.01", "100", "km", "COUNT", "33", "ASC"),
    ("GEOSEARCHSTORE", "dst", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
    ("ZRANGE", "dst", "0", "-1", "WITHSCORES"), ("OBJECT", "ENCODING", "dst"),
    ("GEOSEARCHSTORE", "dst", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "STOREDIST", "COUNT", "3"),
    ("ZRANGE", "dst", "0", "-1", "WITHSCORES"),
    ("GEOSEARCHSTORE", "dst", "Sicily", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "WITHDIST"),
    ("GEOSEARCHSTORE", "dst", "Sicily", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"), ("EXISTS", "dst"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "STORE", "dst2"), ("ZRANGE", "dst2", "0", "-1", "WITHSCORES"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "STOREDIST", "dst2", "WITHDIST"),
    ("GEORADIUS", "Sicily", "15", "37", "200", "km", "STOREDIST", "dst2"), ("ZRANGE", "dst2", "0", "-1", "WITHSCORES"),
    ("GEORADIUSBYMEMBER", "nokey", "nope", "100", "km", "STORE", "dst2"), ("EXISTS", "dst2"),
    ("GEOSEARCHSTORE", "dst3", "world", "FROMLONLAT", "0", "0", "BYRADIUS", "10000", "km"),
    ("OBJECT", "ENCODING", "dst3"), ("ZCARD", "dst3"),
    ("GEOADD", "g", "xx", "1", "1", "a"), ("GEOADD", "g", "nx", "1", "1", "a"), ("GEOADD", "g", "ch", "xx", "2", "2", "a"),
    ("GEOADD", "g", "1", "1"), ("GEOADD", "g", "1", "x", "a"), ("GEOADD", "g", "x", "1", "a"),
    ("GEOADD", "g", "-181", "1", "a"), ("GEOADD", "g", "1", "86", "a"), ("GEOADD", "g", "inf", "1", "a"),
    ("GEOADD", "g", "gt", "1", "1", "a"), ("GEOADD", "g", "ch", "ch", "ch"), ("GEOADD", "g", "1", "1", "b", "2", "2"),
    ("GEOADD", "g", "nx", "xx", "1", "1", "a"), ("GEOADD", "str", "1", "1", "x"),
    ("GEOADD", "g", "180", "85.05112878", "edge", "-180", "-85.05112878", "edge2"),
    ("GEOPOS", "g", "edge", "edge2"), ("GEOHASH", "g", "edge", "edge2"), ("ZRANGE", "g", "0", "-1", "WITHSCORES"),
    ("ZADD", "weird", "inf", "i", "-inf", "ni", "-5", "neg", "1e30", "huge", "0", "zero", "9007199254740993", "odd"),
    ("GEOPOS", "weird", "i", "ni", "neg", "huge", "zero", "odd"), ("GEOHASH", "weird", "i", "ni", "neg", "huge", "zero"),
    ("GEODIST", "weird", "i", "ni"), ("GEOSEARCH", "weird", "FROMMEMBER", "zero", "BYRADIUS", "100", "km", "WITHDIST"),
]


def test_geo_replies_match_redis(pair):
    _seed_data(pair)
    pair.script(SCRIPT)
    pair.check()


def test_random_searches_match_redis(pair):
    """Seeded searches all over the globe (poles, the antimeridian, tiny and
    huge shapes), every option, compared reply for reply, stores included."""
    rnd = random.Random(11)
    pts = []
    for i in range(400):
        lon = rnd.choice([rnd.uniform(-180, 180), rnd.uniform(170, 180), rnd.uniform(-180, -170),
                          rnd.uniform(-5, 5)])
        lat = rnd.choice([rnd.uniform(-85.05, 85.05), rnd.uniform(80, 85.05), rnd.uniform(-85.05, -80),
                          rnd.uniform(-5, 5)])
        pts += ["%.7f" % lon, "%.7f" % lat, "m%d" % i]
    pair.both("GEOADD", "pts", *pts)
    units = ["m", "km", "mi", "ft", "KM"]
    for i in range(150):
        if rnd.random() < 0.3:
            frm = ["FROMMEMBER", "m%d" % rnd.randrange(400)]
        else:
            frm = ["FROMLONLAT", "%.5f" % rnd.uniform(-180, 180), "%.5f" % rnd.uniform(-85, 85)]
        size = rnd.choice([0, 0.5, 10, 300, 2000, 8000, 21000])
        if rnd.random() < 0.5:
            by = ["BYRADIUS", repr(size), rnd.choice(units)]
        else:
            by = ["BYBOX", repr(size), repr(rnd.choice([1, 50, 900, 5000, 30000])), rnd.choice(units)]
        opts = rnd.sample(["WITHDIST", "WITHCOORD", "WITHHASH"], rnd.randint(0, 3))
        opts += rnd.choice([[], ["ASC"], ["DESC"], ["COUNT", str(rnd.randint(1, 20))],
                            ["COUNT", str(rnd.randint(1, 20)), "DESC"], ["COUNT", "3", "ANY"]])
        pair.both("GEOSEARCH", "pts", *frm, *by, *opts, resp=rnd.choice((2, 3)))
        if i % 5 == 0:
            store = ["STOREDIST"] if rnd.random() < 0.5 else []
            pair.both("GEOSEARCHSTORE", "out", "pts", *frm, *by, *store)
            pair.both("ZRANGE", "out", "0", "-1", "WITHSCORES")
            pair.both("OBJECT", "ENCODING", "out")
        if i % 7 == 0:
            a, b = "m%d" % rnd.randrange(400), "m%d" % rnd.randrange(400)
            pair.both("GEODIST", "pts", a, b, rnd.choice(units))
            pair.both("GEOPOS", "pts", a, b, resp=3)
            pair.both("GEOHASH", "pts", a, b)
    pair.check()


def test_geo_commands_through_redis_py(r):
    assert r.geoadd("Sicily", (13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania")) == 2
    assert r.geoadd("Sicily", (13.361389, 38.115556, "Palermo"), ch=True) == 0
    assert r.geoadd("Sicily", (13.5, 38.115556, "Palermo"), xx=True, ch=True) == 1
    assert r.geoadd("Sicily", (13.361389, 38.115556, "Palermo", 1, 1, "x"), nx=True) == 1
    assert r.zscore("Sicily", "Catania") == 3479447370796909.0
    assert r.geodist("Sicily", "Palermo", "Catania", unit="km") is not None
    assert r.geodist("Sicily", "Palermo", "nope") is None
    assert r.geohash("Sicily", "Catania", "nope") == ["sqdtr74hyu0", None]
    lon, lat = r.geopos("Sicily", "Catania")[0]
    assert abs(lon - 15.087269) < 1e-5 and abs(lat - 37.502669) < 1e-5
    assert r.georadius("Sicily", 15, 37, 200, unit="km", sort="ASC") == [b"Catania", b"Palermo"]
    got = r.georadiusbymember("Sicily", "Catania", 300, unit="km", withdist=True, sort="ASC")
    assert got[0] == [b"Catania", 0.0] and got[1][0] == b"Palermo"
    assert r.geosearch("Sicily", longitude=15, latitude=37, radius=200, unit="km",
                       sort="DESC", count=1) == [b"Palermo"]
    assert r.geosearch("Sicily", member="Palermo", width=400, height=400, unit="km",
                       withcoord=True)[0][0] in (b"Palermo", b"Catania")
    assert r.geosearchstore("dst", "Sicily", longitude=15, latitude=37, radius=200, unit="km",
                            storedist=True) == 2
    assert 56 < r.zscore("dst", "Catania") < 57
    assert r.georadius("Sicily", 15, 37, 200, unit="km", store="d2") == 2
    assert r.zscore("d2", "Catania") == 3479447370796909.0
    assert r.execute_command("GEORADIUS_RO", "Sicily", 15, 37, 200, "km") == [b"Palermo", b"Catania"]
    assert r.execute_command("GEORADIUSBYMEMBER_RO", "Sicily", "Palermo", 10, "km") == [b"Palermo"]


def test_geoadd_propagates_as_zadd_and_notifies_zadd(server, r):
    sub = Conn(server.port)
    r.config_set("notify-keyspace-events", "KEA")
    try:
        sub.raw("SUBSCRIBE", "__keyevent@0__:zadd")
        r.geoadd("g", (1, 1, "a"))
        msgs = sub.messages()
        assert msgs == [b"*3\r\n$7\r\nmessage\r\n$19\r\n__keyevent@0__:zadd\r\n$1\r\ng\r\n"]
    finally:
        r.config_set("notify-keyspace-events", "")
        sub.close()


# ------------------------------------------------------------------ geohash units
def test_known_scores_and_hashes():
    assert geohash.score_of(13.361389, 38.115556) == 3479099956230698
    assert geohash.score_of(15.087269, 37.502669) == 3479447370796909
    assert geohash.geohash_string(3479099956230698) == b"sqc8b49rny0"
    assert geohash.score_of(180, 85.05112878) == 13510798882111488
    assert geohash.decode(geohash.score_of(180, 85.05112878)) == (180.0, 85.05112878)
    assert geohash.encode(181, 0) is None and geohash.encode(0, 86) is None
    # Redis's documented distance between Palermo and Catania
    a = geohash.decode(3479099956230698)
    b = geohash.decode(3479447370796909)
    assert "%.4f" % geohash.distance(a[0], a[1], b[0], b[1]) == "166274.1516"


@settings(max_examples=100, deadline=None)
@given(st.floats(-180, 180), st.floats(geohash.LAT_MIN, geohash.LAT_MAX))
def test_decode_lands_in_the_encoded_cell(lon, lat):
    s = geohash.score_of(lon, lat)
    assert 0 <= s < 1 << 54      # longitude 180 sets the 54th bit, as in Redis
    dlon, dlat = geohash.decode(s)
    assert abs(dlon - lon) <= 360 / 2 ** 26 and abs(dlat - lat) <= 170.2 / 2 ** 26
    assert geohash.score_of(dlon, dlat) == s or lon == 180 or lat == geohash.LAT_MAX


@settings(max_examples=100, deadline=None)
@given(st.floats(-179, 179), st.floats(-80, 80), st.floats(1, 3_000_000))
def test_search_boxes_cover_the_circle(lon, lat, radius):
    """Every point of the circle's bounding box lies in one of the scanned
    score ranges (the 9-box search never misses a candidate), for circles
    whose bounding box stays off the poles: past a pole Redis's box formula
    (cos of a latitude over 90) inverts the longitude span and Redis misses
    points, which test_polar_circle_misses_what_redis_misses pins down."""
    shape = geohash.Shape()
    shape.type = geohash.CIRCULAR
    shape.lon, shape.lat, shape.radius = lon, lat, radius
    boxes = geohash.search_boxes(shape)
    assert 1 <= len(boxes) <= 9
    min_lon, min_lat, max_lon, max_lat = shape.bounds()
    assume(-90 < min_lat and max_lat < 90)
    rnd = random.Random(int(lon * 1000) ^ int(lat * 1000))
    for _ in range(30):
        plon = rnd.uniform(max(min_lon, -180), min(max_lon, 180))
        plat = rnd.uniform(max(min_lat, geohash.LAT_MIN), min(max_lat, geohash.LAT_MAX))
        s = geohash.score_of(plon, plat)
        dlon, dlat = geohash.decode(s)
        if shape.contains(dlon, dlat) is not None:
            assert any(lo <= s < hi for lo, hi in boxes)


def test_polar_circle_misses_what_redis_misses(pair):
    """A circle whose bounding box crosses the north pole: Redis's search skips
    points inside the radius (its longitude bounds invert); pynode answers
    the same, in both orders and with distances."""
    pts = [(-44.682765, 75.425334), (-10.226510, 83.819530), (-8.727418, 84.036913),
           (-7.082588, 84.683943), (-67.213869, 82.113283), (0.0, 80.0), (10.0, 81.0),
           (170.0, 85.0), (-120.0, 84.5)]
    args = []
    for i, (lon, lat) in enumerate(pts):
        args += ["%.6f" % lon, "%.6f" % lat, "p%d" % i]
    assert pair.both("GEOADD", "polar", *args) == b":%d\r\n" % len(pts)
    for radius in ("1134873", "400000", "2000000"):
        for order in ("ASC", "DESC"):
            pair.both("GEOSEARCH", "polar", "FROMLONLAT", "0", "80", "BYRADIUS", radius, "m",
                      order, "WITHDIST")
    # p1 lies within 1134873 m of (0, 80) and is not found, by either server
    dist = pair.both("GEODIST", "polar", "p5", "p1")
    assert float(dist.split(b"\r\n")[1]) < 1134873, dist
    found = pair.both("GEOSEARCH", "polar", "FROMLONLAT", "0", "80", "BYRADIUS", "1134873", "m")
    assert b"p1\r\n" not in found and b"p5\r\n" in found
    pair.check()


def test_distance_is_haversine():
    d = geohash.distance(0, 0, 0, 1)
    assert math.isclose(d, geohash.EARTH_RADIUS_IN_METERS * math.pi / 180, rel_tol=1e-12)
    assert geohash.distance(10, 20, 10, 20) == 0.0
    assert math.isclose(geohash.distance(-179.5, 0, 179.5, 0), geohash.distance(0, 0, 1, 0),
                        rel_tol=1e-9)
