"""LOLWUT [VERSION v] [...] as Redis 7.0 draws it (lolwut.c, lolwut5.c, lolwut6.c).

VERSION 5 is Georg Nees' "Schotter" on a braille canvas: rows of squares,
rotated and moved at random from the third row on (Redis uses rand(), so only
drawings of one or two rows are the same on every call); the arithmetic is
Redis's single-precision float arithmetic, so those drawings are Redis's
bytes. VERSION 6 is a skyline of skyscrapers in the terminal's four grays
(cols x rows character cells, white sky, random offsets, sizes and window
colors, so only drawings of one row are the same on every call). Any other
version, and no version, answer the version line.
"""

from __future__ import annotations

import math
import random
import struct

from pynode.commands import command, parse_int
from pynode.config import VERSION
from pynode.resp import Verbatim, encode

_RAND_MAX = 2147483647


def _f32(v: float) -> float:
    """A C float: v rounded to single precision."""
    return struct.unpack("f", struct.pack("f", v))[0]


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(width * height)

    def pixel(self, x: int, y: int) -> int:
        if 0 <= x < self.width and 0 <= y < self.height:
            return self.pixels[x + y * self.width]
        return 0

    def draw_pixel(self, x: int, y: int) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self.pixels[x + y * self.width] = 1

    def line(self, x1: int, y1: int, x2: int, y2: int) -> None:
        """Bresenham, as lwDrawLine."""
        dx, dy = abs(x2 - x1), abs(y2 - y1)
        sx = 1 if x1 < x2 else -1
        sy = 1 if y1 < y2 else -1
        err = dx - dy
        while True:
            self.draw_pixel(x1, y1)
            if x1 == x2 and y1 == y2:
                break
            e2 = err * 2
            if e2 > -dy:
                err -= dy
                x1 += sx
            if e2 < dx:
                err += dx
                y1 += sy

    def square(self, x: int, y: int, size: float, angle: float) -> None:
        """lwDrawSquare: size is the side; the corners sit on a circle."""
        size = _f32(round(_f32(size / 1.4142135623)))
        k = _f32(math.pi / 4 + angle)
        px, py = [], []
        for _ in range(4):
            px.append(int(_c_round(math.sin(k) * size + x)))
            py.append(int(_c_round(math.cos(k) * size + y)))
            k = _f32(k + math.pi / 2)
        for j in range(4):
            self.line(px[j], py[j], px[(j + 1) % 4], py[(j + 1) % 4])

    def render(self) -> bytes:
        """Braille characters, 2x4 pixels each (renderCanvas)."""
        out = []
        get = self.pixel
        for y in range(0, self.height, 4):
            row = []
            for x in range(0, self.width, 2):
                b = (get(x, y) | get(x, y + 1) << 1 | get(x, y + 2) << 2
                     | get(x + 1, y) << 3 | get(x + 1, y + 1) << 4 | get(x + 1, y + 2) << 5
                     | get(x, y + 3) << 6 | get(x + 1, y + 3) << 7)
                row.append(chr(0x2800 + b))
            out.append("".join(row))
            if y != self.height - 1:
                out.append("\n")
        return "".join(out).encode()


def _c_round(v: float) -> float:
    """C's round(): halves away from zero."""
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def _rand() -> float:
    return random.getrandbits(31) / _RAND_MAX


def schotter(cols: int, per_row: int, per_col: int) -> Canvas:
    """lwDrawSchotter."""
    width = cols * 2
    padding = 2 if width > 4 else 0
    side = _f32((width - padding * 2) / per_row)
    height = int(_f32(_f32(side * per_col) + padding * 2))
    canvas = Canvas(width, height)
    half = _f32(side / 2)
    for y in range(per_col):
        for x in range(per_row):
            sx = _f32(_f32(_f32(x * side) + half) + padding)
            sy = _f32(_f32(_f32(y * side) + half) + padding)
            angle = 0.0
            if y > 1:
                r1 = _f32(_f32(_rand() / per_col) * y)
                r2 = _f32(_f32(_rand() / per_col) * y)
                r3 = _f32(_f32(_rand() / per_col) * y)
                if random.getrandbits(1):
                    r1 = -r1
                if random.getrandbits(1):
                    r2 = -r2
                if random.getrandbits(1):
                    r3 = -r3
                angle = r1
                sx = int(sx) + _f32(_f32(r2 * side) / 3)
                sy = int(sy) + _f32(_f32(r3 * side) / 3)
            canvas.square(int(sx), int(sy), side, angle)
    return canvas


def _lolwut5(args: list[bytes]) -> bytes:
    vals = [66, 8, 12]
    for i, a in enumerate(args[:3]):
        vals[i] = parse_int(a)
    cols = min(max(vals[0], 1), 1000)
    per_row = min(max(vals[1], 1), 200)
    per_col = min(max(vals[2], 1), 200)
    return (schotter(cols, per_row, per_col).render()
            + b"\nGeorg Nees - schotter, plotter on paper, 1968. Redis ver. "
            + VERSION.encode() + b"\n")


# lolwut6.c's renderCanvas: foreground and background escape per gray level
_GRAYS = (b"\x1b[0;30;40m \x1b[0m", b"\x1b[0;90;100m \x1b[0m",
          b"\x1b[0;37;47m \x1b[0m", b"\x1b[0;97;107m \x1b[0m")


def _crand() -> int:
    """C's rand(): 0..RAND_MAX."""
    return random.getrandbits(31)


def _skyscraper(px: bytearray, width: int, height: int, xoff: int, w: int, h: int,
                windows: bool, color: int) -> None:
    """generateSkyscraper: a building standing on the bottom row; the roof
    is four cells narrower; windows are two cells wide, one tall."""
    starty = height - 1
    endy = starty - h + 1
    for y in range(starty, endy - 1, -1):
        for x in range(xoff, xoff + w):
            if y == endy and (x <= xoff + 1 or x >= xoff + w - 2):
                continue
            c = color
            if windows and xoff + 1 < x < xoff + w - 2 and endy + 1 < y < starty - 1:
                relx = x - (xoff + 1)
                rely = y - (endy + 1)
                if (relx // 2) % 2 and rely % 2:
                    c = color
                    while c == color:
                        c = 1 + _crand() % 2
                    if relx % 2:      # the window's second cell, same color
                        c = px[x - 1 + y * width] if 0 <= x - 1 < width and 0 <= y < height else 0
            if 0 <= x < width and 0 <= y < height:
                px[x + y * width] = c


def skyline(width: int, height: int) -> bytearray:
    """generateSkyline: two passes of plain background buildings (lighter
    behind), then the black foreground ones with windows."""
    px = bytearray([3]) * (width * height)
    for color in (2, 1):
        offset = -10
        while offset < width:
            offset += _crand() % 8
            w = 10 + _crand() % 9
            if color == 2:
                h = height // 2 + (_crand() % height) // 2
            else:
                h = height // 2 + (_crand() % height) // 3
            _skyscraper(px, width, height, offset, w, h, False, color)
            offset += w // 2 if color == 2 else w + 1
    offset = -10
    while offset < width:
        offset += _crand() % 8
        w = 5 + _crand() % 14
        if w % 4:
            w += w % 3
        h = height // 3 + (_crand() % height) // 2
        _skyscraper(px, width, height, offset, w, h, True, 0)
        offset += w + 5
    return px


def _lolwut6(args: list[bytes]) -> bytes:
    vals = [80, 20]
    for i, a in enumerate(args[:2]):
        vals[i] = parse_int(a)
    cols = min(max(vals[0], 1), 1000)
    rows = min(max(vals[1], 1), 1000)
    px = skyline(cols, rows)
    lines = []
    for y in range(rows):
        lines.append(b"".join([_GRAYS[c] for c in px[y * cols:(y + 1) * cols]]))
    return (b"\n".join(lines)
            + b"\nDedicated to the 8 bit game developers of past and present.\n"
            b"Original 8 bit image from Plaguemon by hikikomori. Redis ver. "
            + VERSION.encode() + b"\n")


@command("lolwut")
def lolwut(c, argv):
    args = argv[1:]
    version = VERSION
    if len(args) >= 2 and args[0].lower() == b"version":
        version = "%d.0.0" % (parse_int(args[1]) & 0xFFFFFFFF)   # %u of a long
        args = args[2:]
    if (version[:2] == "5." and version[2] != "9") or version[:3] == "4.9":
        text = _lolwut5(args)
    elif (version[:2] == "6." and version[2] != "9") or version[:3] == "5.9":
        text = _lolwut6(args)
    else:
        text = b"Redis ver. " + VERSION.encode() + b"\n"
    return encode(Verbatim(text), c.resp)
