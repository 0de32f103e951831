"""A tiny PNG bar-chart renderer (zlib + struct), so the benchmark draws its chart without a plotting library.

An RGB canvas, filled rectangles, and a 5x7 bitmap font (digits, capitals and a few signs) scaled by whole
pixels. Enough for labelled bars, axes and gridlines; the exact figures are in the markdown table next to it.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (20, 20, 20)
GREY: Color = (215, 215, 215)
DARK_GREY: Color = (110, 110, 110)

_FONT_ROWS = {
    "0": "01110,10001,10011,10101,11001,10001,01110",
    "1": "00100,01100,00100,00100,00100,00100,01110",
    "2": "01110,10001,00001,00010,00100,01000,11111",
    "3": "11111,00010,00100,00010,00001,10001,01110",
    "4": "00010,00110,01010,10010,11111,00010,00010",
    "5": "11111,10000,11110,00001,00001,10001,01110",
    "6": "00110,01000,10000,11110,10001,10001,01110",
    "7": "11111,00001,00010,00100,01000,01000,01000",
    "8": "01110,10001,10001,01110,10001,10001,01110",
    "9": "01110,10001,10001,01111,00001,00010,01100",
    "A": "01110,10001,10001,11111,10001,10001,10001",
    "B": "11110,10001,10001,11110,10001,10001,11110",
    "C": "01110,10001,10000,10000,10000,10001,01110",
    "D": "11100,10010,10001,10001,10001,10010,11100",
    "E": "11111,10000,10000,11110,10000,10000,11111",
    "F": "11111,10000,10000,11110,10000,10000,10000",
    "G": "01110,10001,10000,10111,10001,10001,01111",
    "H": "10001,10001,10001,11111,10001,10001,10001",
    "I": "01110,00100,00100,00100,00100,00100,01110",
    "J": "00111,00010,00010,00010,00010,10010,01100",
    "K": "10001,10010,10100,11000,10100,10010,10001",
    "L": "10000,10000,10000,10000,10000,10000,11111",
    "M": "10001,11011,10101,10101,10001,10001,10001",
    "N": "10001,10001,11001,10101,10011,10001,10001",
    "O": "01110,10001,10001,10001,10001,10001,01110",
    "P": "11110,10001,10001,11110,10000,10000,10000",
    "Q": "01110,10001,10001,10001,10101,10010,01101",
    "R": "11110,10001,10001,11110,10100,10010,10001",
    "S": "01111,10000,10000,01110,00001,00001,11110",
    "T": "11111,00100,00100,00100,00100,00100,00100",
    "U": "10001,10001,10001,10001,10001,10001,01110",
    "V": "10001,10001,10001,10001,10001,01010,00100",
    "W": "10001,10001,10001,10101,10101,10101,01010",
    "X": "10001,10001,01010,00100,01010,10001,10001",
    "Y": "10001,10001,10001,01010,00100,00100,00100",
    "Z": "11111,00001,00010,00100,01000,10000,11111",
    " ": "00000,00000,00000,00000,00000,00000,00000",
    ".": "00000,00000,00000,00000,00000,01100,01100",
    "/": "00000,00001,00010,00100,01000,10000,00000",
    "%": "11000,11001,00010,00100,01000,10011,00011",
    "-": "00000,00000,00000,11111,00000,00000,00000",
    ":": "00000,01100,01100,00000,01100,01100,00000",
    "(": "00010,00100,01000,01000,01000,00100,00010",
    ")": "01000,00100,00010,00010,00010,00100,01000",
    "=": "00000,00000,11111,00000,11111,00000,00000",
}
FONT: dict[str, list[str]] = {char: rows.split(",") for char, rows in _FONT_ROWS.items()}
GLYPH_WIDTH, GLYPH_HEIGHT = 5, 7


class Canvas:
    """An RGB image in memory, written out as a PNG."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the rectangle [x0, x1) x [y0, y1), clipped to the canvas."""
        x0, x1 = max(min(x0, x1), 0), min(max(x0, x1), self.width)
        y0, y1 = max(min(y0, y1), 0), min(max(y0, y1), self.height)
        if x0 >= x1 or y0 >= y1:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            start = (y * self.width + x0) * 3
            self.pixels[start : start + len(row)] = row

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> None:
        """Draw `text` (upper-cased; unknown characters become spaces) with its top-left corner at (x, y)."""
        for index, char in enumerate(text.upper()):
            rows = FONT.get(char, FONT[" "])
            left = x + index * (GLYPH_WIDTH + 1) * scale
            for dy, bits in enumerate(rows):
                for dx, bit in enumerate(bits):
                    if bit == "1":
                        px, py = left + dx * scale, y + dy * scale
                        self.rect(px, py, px + scale, py + scale, color)

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3]) for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        )


def text_width(text: str, scale: int = 1) -> int:
    return len(text) * (GLYPH_WIDTH + 1) * scale - scale


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (the top of an axis)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def compact(value: float) -> str:
    """At most 4 characters or so: 0, 0.25, 7.5, 42, 950, 1.2K, 15K, 1.5M."""
    if value == 0:
        return "0"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}K"
    if value >= 1000:
        return f"{value / 1000:.1f}K"
    if value >= 10:
        return f"{value:.0f}"
    if value < 1:
        # CPU milliseconds per transaction live here: 0.25 and 0.3 are not the same figure.
        return f"{value:.2f}"
    return f"{value:.1f}"


@dataclass(frozen=True)
class Series:
    label: str
    color: Color
    values: list[float | None]
    """One value per category; None draws no bar."""


def bar_panel(  # noqa: PLR0917 - a drawing call reads best as position, size, then content
    canvas: Canvas, x: int, y: int, width: int, height: int, title: str, categories: list[str], series: list[Series]
) -> None:
    """A grouped bar chart: one group per category, one bar per series, gridlines and labels."""
    scale = 2
    canvas.text(x, y, title, BLACK, scale)
    legend_y = y + 22
    legend_x = x
    for s in series:
        canvas.rect(legend_x, legend_y, legend_x + 12, legend_y + 12, s.color)
        canvas.text(legend_x + 16, legend_y + 3, s.label, BLACK, 1)
        legend_x += 16 + text_width(s.label) + 14
    top, bottom = y + 52, y + height - 24
    left, right = x + 44, x + width
    values = [v for s in series for v in s.values if v is not None]
    ceiling = nice_ceiling(max(values) if values else 1.0)
    ticks = 5
    for i in range(ticks + 1):
        tick_value = ceiling * i / ticks
        ty = bottom - round((bottom - top) * i / ticks)
        canvas.rect(left, ty, right, ty + 1, GREY if i else DARK_GREY)
        label = compact(tick_value)
        canvas.text(left - 4 - text_width(label), ty - 3, label, DARK_GREY, 1)
    group = (right - left) / max(len(categories), 1)
    bar = max(int(group * 0.8 / max(len(series), 1)) - 2, 3)
    for index, category in enumerate(categories):
        group_left = left + index * group + group * 0.1
        for k, s in enumerate(series):
            value = s.values[index]
            if value is None:
                continue
            bx = int(group_left + k * (bar + 2))
            by = bottom - round((bottom - top) * min(value / ceiling, 1.0))
            canvas.rect(bx, by, bx + bar, bottom, s.color)
            label = compact(value)
            canvas.text(bx + (bar - text_width(label)) // 2, by - 10, label, BLACK, 1)
        cx = int(left + index * group + group / 2)
        canvas.text(cx - text_width(category, scale) // 2, bottom + 6, category, BLACK, scale)
