"""Geohash arithmetic as Redis 7.0 does it (geohash.c, geohash_helper.c).

A position is stored as a sorted-set score: the 52-bit interleaving of the
26-bit latitude and longitude cells (latitude bits in the even positions),
over Redis's ranges (longitude -180..180, latitude -85.05112878..85.05112878,
the Web Mercator limits).  Distances are haversine on a sphere of radius
6372797.560856 m.  Every formula keeps Redis's operation order, so the
doubles (and therefore the replies) are the same bit for bit: Python's
math functions call the same C library.
"""

from __future__ import annotations

import math

LONG_MIN = -180.0
LONG_MAX = 180.0
LAT_MIN = -85.05112878
LAT_MAX = 85.05112878
STEP_MAX = 26

EARTH_RADIUS_IN_METERS = 6372797.560856
MERCATOR_MAX = 20037726.37
D_R = math.pi / 180.0
GEO_EPSILON = 1e-15

CIRCULAR = 1
RECTANGLE = 2

_B = (0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F,
      0x00FF00FF00FF00FF, 0x0000FFFF0000FFFF, 0x00000000FFFFFFFF)
_M64 = 0xFFFFFFFFFFFFFFFF


def _interleave64(xlo: int, ylo: int) -> int:
    x = xlo & 0xFFFFFFFF
    y = ylo & 0xFFFFFFFF
    x = (x | (x << 16)) & _B[4]
    y = (y | (y << 16)) & _B[4]
    x = (x | (x << 8)) & _B[3]
    y = (y | (y << 8)) & _B[3]
    x = (x | (x << 4)) & _B[2]
    y = (y | (y << 4)) & _B[2]
    x = (x | (x << 2)) & _B[1]
    y = (y | (y << 2)) & _B[1]
    x = (x | (x << 1)) & _B[0]
    y = (y | (y << 1)) & _B[0]
    return (x | (y << 1)) & _M64


def _deinterleave64(v: int) -> int:
    x = v
    y = v >> 1
    for b, s in zip(_B, (0, 1, 2, 4, 8, 16)):
        x = (x | (x >> s)) & b
        y = (y | (y >> s)) & b
    return x | (y << 32)


def encode(lon: float, lat: float, step: int = STEP_MAX,
           lon_range=(LONG_MIN, LONG_MAX), lat_range=(LAT_MIN, LAT_MAX)) -> int | None:
    """geohashEncode: the `2*step`-bit hash, or None outside the ranges."""
    if step > 32 or step == 0:
        return None
    if lon > 180 or lon < -180 or lat > 85.05112878 or lat < -85.05112878:
        return None
    if lat < lat_range[0] or lat > lat_range[1] or lon < lon_range[0] or lon > lon_range[1]:
        return None
    lat_offset = (lat - lat_range[0]) / (lat_range[1] - lat_range[0])
    long_offset = (lon - lon_range[0]) / (lon_range[1] - lon_range[0])
    lat_offset *= (1 << step)
    long_offset *= (1 << step)
    return _interleave64(int(lat_offset), int(long_offset))


def area(bits: int, step: int, lon_range=(LONG_MIN, LONG_MAX),
         lat_range=(LAT_MIN, LAT_MAX)):
    """geohashDecode: ((lon_min, lon_max), (lat_min, lat_max)) of a cell."""
    sep = _deinterleave64(bits)
    ilato = sep & 0xFFFFFFFF
    ilono = (sep >> 32) & 0xFFFFFFFF
    lat_scale = lat_range[1] - lat_range[0]
    long_scale = lon_range[1] - lon_range[0]
    div = float(1 << step)
    return ((lon_range[0] + (ilono * 1.0 / div) * long_scale,
             lon_range[0] + ((ilono + 1) * 1.0 / div) * long_scale),
            (lat_range[0] + (ilato * 1.0 / div) * lat_scale,
             lat_range[0] + ((ilato + 1) * 1.0 / div) * lat_scale))


_TWO63 = 9223372036854775808.0


def _to_u64(x: float) -> int:
    """(uint64_t)x as x86-64 code computes it, out-of-range values included."""
    if x < _TWO63:
        if x >= -_TWO63:
            return int(x) & _M64
        return 0x8000000000000000
    x -= _TWO63
    if x < _TWO63:
        return (int(x) ^ 0x8000000000000000) & _M64
    return 0


def decode(score: float) -> tuple[float, float]:
    """The (longitude, latitude) a zset score stands for (the cell's centre,
    clamped to the valid ranges), as decodeGeohash()."""
    (lo0, lo1), (la0, la1) = area(_to_u64(score), STEP_MAX)
    lon = (lo0 + lo1) / 2
    if lon > LONG_MAX:
        lon = LONG_MAX
    if lon < LONG_MIN:
        lon = LONG_MIN
    lat = (la0 + la1) / 2
    if lat > LAT_MAX:
        lat = LAT_MAX
    if lat < LAT_MIN:
        lat = LAT_MIN
    return lon, lat


def score_of(lon: float, lat: float) -> int:
    """The 52-bit zset score GEOADD stores for a position."""
    bits = encode(lon, lat)
    return bits << (52 - STEP_MAX * 2) if bits is not None else 0


_ALPHABET = b"0123456789bcdefghjkmnpqrstuvwxyz"


def geohash_string(score: float) -> bytes:
    """GEOHASH's 11-character standard geohash (re-encoded over -90..90)."""
    lon, lat = decode(score)
    bits = encode(lon, lat, 26, (-180.0, 180.0), (-90.0, 90.0)) or 0
    out = bytearray()
    for i in range(11):
        idx = 0 if i == 10 else (bits >> (52 - (i + 1) * 5)) & 0x1F
        out.append(_ALPHABET[idx])
    return bytes(out)


# ------------------------------------------------------------------ distances
def lat_distance(lat1: float, lat2: float) -> float:
    return EARTH_RADIUS_IN_METERS * abs(lat2 * D_R - lat1 * D_R)


def distance(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """geohashGetDistance: haversine, with Redis's shortcut for equal longitudes."""
    lon1r = lon1 * D_R
    lon2r = lon2 * D_R
    v = math.sin((lon2r - lon1r) / 2)
    if abs(v) <= GEO_EPSILON:
        return EARTH_RADIUS_IN_METERS * abs(lat2 * D_R - lat1 * D_R)
    lat1r = lat1 * D_R
    lat2r = lat2 * D_R
    u = math.sin((lat2r - lat1r) / 2)
    a = u * u + math.cos(lat1r) * math.cos(lat2r) * v * v
    return 2.0 * EARTH_RADIUS_IN_METERS * math.asin(math.sqrt(a))


class Shape:
    """GeoShape: a circle (radius) or an axis-aligned box (width, height)
    around xy, in `conversion` meters per unit."""

    __slots__ = ("type", "lon", "lat", "radius", "width", "height", "conversion")

    def __init__(self) -> None:
        self.type = 0
        self.lon = 0.0
        self.lat = 0.0
        self.radius = 0.0
        self.width = 0.0
        self.height = 0.0
        self.conversion = 1.0

    def contains(self, lon: float, lat: float) -> float | None:
        """geoWithinShape: the distance (meters) from the centre, or None."""
        if self.type == CIRCULAR:
            d = distance(self.lon, self.lat, lon, lat)
            if d > self.radius * self.conversion:
                return None
            return d
        width_m = self.width * self.conversion
        height_m = self.height * self.conversion
        if lat_distance(lat, self.lat) > height_m / 2:
            return None
        if distance(lon, lat, self.lon, lat) > width_m / 2:
            return None
        return distance(self.lon, self.lat, lon, lat)

    def bounds(self) -> tuple[float, float, float, float]:
        """geohashBoundingBox: (min_lon, min_lat, max_lon, max_lat)."""
        if self.type == CIRCULAR:
            height = self.conversion * self.radius
            width = self.conversion * self.radius
        else:
            height = self.conversion * self.height / 2
            width = self.conversion * self.width / 2
        lon, lat = self.lon, self.lat
        lat_delta = (height / EARTH_RADIUS_IN_METERS) / D_R
        long_delta_top = (width / EARTH_RADIUS_IN_METERS / math.cos((lat + lat_delta) * D_R)) / D_R
        long_delta_bottom = (width / EARTH_RADIUS_IN_METERS
                             / math.cos((lat - lat_delta) * D_R)) / D_R
        if lat < 0:
            return (lon - long_delta_bottom, lat - lat_delta, lon + long_delta_bottom,
                    lat + lat_delta)
        return lon - long_delta_top, lat - lat_delta, lon + long_delta_top, lat + lat_delta


def estimate_steps(range_meters: float, lat: float) -> int:
    """geohashEstimateStepsByRadius."""
    if range_meters == 0:
        return 26
    step = 1
    while range_meters < MERCATOR_MAX:
        range_meters *= 2
        step += 1
    step -= 2
    if lat > 66 or lat < -66:
        step -= 1
        if lat > 80 or lat < -80:
            step -= 1
    if step < 1:
        step = 1
    if step > 26:
        step = 26
    return step


def _move_x(bits: int, step: int, d: int) -> int:
    x = bits & 0xAAAAAAAAAAAAAAAA
    y = bits & 0x5555555555555555
    zz = 0x5555555555555555 >> (64 - step * 2)
    if d > 0:
        x = x + (zz + 1)
    else:
        x = x | zz
        x = x - (zz + 1)
    x &= _M64
    x &= (0xAAAAAAAAAAAAAAAA >> (64 - step * 2))
    return x | y


def _move_y(bits: int, step: int, d: int) -> int:
    x = bits & 0xAAAAAAAAAAAAAAAA
    y = bits & 0x5555555555555555
    zz = 0xAAAAAAAAAAAAAAAA >> (64 - step * 2)
    if d > 0:
        y = y + (zz + 1)
    else:
        y = y | zz
        y = y - (zz + 1)
    y &= _M64
    y &= (0x5555555555555555 >> (64 - step * 2))
    return x | y


def neighbors(bits: int, step: int) -> list[int]:
    """[north, south, east, west, north_east, north_west, south_east, south_west]."""
    east = _move_x(bits, step, 1)
    west = _move_x(bits, step, -1)
    north = _move_y(bits, step, 1)
    south = _move_y(bits, step, -1)
    return [north, south, east, west,
            _move_y(east, step, 1), _move_y(west, step, 1),
            _move_y(east, step, -1), _move_y(west, step, -1)]


def search_boxes(shape: Shape) -> list[tuple[int, int]]:
    """geohashCalculateAreasByShapeWGS84 + membersOfAllNeighbors' order: the
    [min, max) score ranges to scan, centre first, then N S E W NE NW SE SW,
    without the useless boxes and without repeating the previous range."""
    min_lon, min_lat, max_lon, max_lat = shape.bounds()
    lon, lat = shape.lon, shape.lat
    if shape.type == CIRCULAR:
        radius_meters = shape.radius
    else:
        radius_meters = math.sqrt((shape.width / 2) * (shape.width / 2)
                                  + (shape.height / 2) * (shape.height / 2))
    radius_meters *= shape.conversion
    steps = estimate_steps(radius_meters, lat)
    h = encode(lon, lat, steps)
    nb = neighbors(h, steps)
    (a_lo0, a_lo1), (a_la0, a_la1) = area(h, steps)
    north, south, east, west = (area(nb[0], steps), area(nb[1], steps),
                                area(nb[2], steps), area(nb[3], steps))
    decrease = (north[1][1] < max_lat or south[1][0] > min_lat
                or east[0][1] < max_lon or west[0][0] > min_lon)
    if steps > 1 and decrease:
        steps -= 1
        h = encode(lon, lat, steps)
        nb = neighbors(h, steps)
        (a_lo0, a_lo1), (a_la0, a_la1) = area(h, steps)
    # nb: 0 N, 1 S, 2 E, 3 W, 4 NE, 5 NW, 6 SE, 7 SW; None = excluded (GZERO)
    cells: list = [h] + nb
    if steps >= 2:
        if a_la0 < min_lat:
            cells[2] = cells[7] = cells[8] = None         # south, SE, SW
        if a_la1 > max_lat:
            cells[1] = cells[5] = cells[6] = None         # north, NE, NW
        if a_lo0 < min_lon:
            cells[4] = cells[6] = cells[8] = None         # west, NW, SW
        if a_lo1 > max_lon:
            cells[3] = cells[5] = cells[7] = None         # east, NE, SE
    shift = 52 - steps * 2
    out = []
    last = 0            # index of the last box scanned; 0 (the centre) never compares
    for i, c in enumerate(cells):
        if c is None:
            continue
        if last and c == cells[last]:
            continue    # huge radius: adjacent neighbours can be the same box
        out.append((c << shift, (c + 1) << shift))
        last = i
    return out
