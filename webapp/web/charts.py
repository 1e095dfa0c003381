"""Small charts as SVG geometry (histogram, sparkline, ranges) for templates/_admin_charts.html."""
import math
from dataclasses import dataclass

# Numbers only: the template draws them with classes, no inline style, so the CSP allows them and
# the page's light and dark colours (CSS variables) apply inside the SVG as anywhere.
WIDTH, HEIGHT = 320, 112  # the viewBox; the SVG scales to its column
VIEWBOX = f"0 0 {WIDTH} {HEIGHT}"
LEFT, RIGHT, TOP, BOTTOM = 4, 316, 16, 94  # the plot area, leaving room for labels
MOST_BUCKETS = 12
RANGE_LABEL, RANGE_VALUE = 36, 46  # room for a range's label on its left, and its median's on the right


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    low: int   # the bucket holds low <= value < high
    high: int


@dataclass(frozen=True)
class Histogram:
    bars: tuple
    most: int     # the tallest bar's count
    ticks: tuple  # (x, label, anchor) under the axis


@dataclass(frozen=True)
class Sparkline:
    path: str
    last: tuple      # (x, y) of the newest point
    median_y: float
    low: float       # the values at the bottom and the top of the plot
    high: float
    count: int


@dataclass(frozen=True)
class Ranges:
    rows: tuple   # Range per row
    ticks: tuple  # (x, label) at each power of ten of the scale


@dataclass(frozen=True)
class Range:
    label: str
    y: float
    x_low: float
    x_high: float
    x_median: float
    median: float


def nice_step(span, most=MOST_BUCKETS):
    """A bucket width of 1, 2 or 5 times a power of ten, at least 1 (token counts are whole), that
    covers `span` in about `most` buckets."""
    raw = max(span / most, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def buckets(values, most=MOST_BUCKETS):
    """[(low, high, count)] of equal, round-edged buckets from the smallest value to the largest."""
    step = nice_step(max(values) - min(values), most)
    start = math.floor(min(values) / step) * step
    counts = [0] * (int((max(values) - start) // step) + 1)
    for value in values:
        counts[int((value - start) // step)] += 1
    return [(start + i * step, start + (i + 1) * step, count) for i, count in enumerate(counts)]


def histogram(values):
    """One bar per bucket (empty buckets too, at height 0), or None without values."""
    if not values:
        return None
    found = buckets(values)
    most = max(count for _low, _high, count in found)
    width = (RIGHT - LEFT) / len(found)
    bars = tuple(Bar(_r(LEFT + i * width), _r(BOTTOM - count / most * (BOTTOM - TOP)), _r(max(width - 1, 0.5)),
                     _r(count / most * (BOTTOM - TOP)), count, low, high)
                 for i, (low, high, count) in enumerate(found))
    ticks = ((LEFT, f"{found[0][0]:,}", "start"), (RIGHT, f"{found[-1][1]:,}", "end"))
    if len(found) >= 4:  # a middle edge, when there is room for it
        middle = len(found) // 2
        ticks += ((_r(LEFT + middle * width), f"{found[middle][0]:,}", "middle"),)
    return Histogram(bars, most, ticks)


def sparkline(values):
    """The values in order, left to right, scaled between their smallest and largest; or None."""
    if not values:
        return None
    low, high = min(values), max(values)
    step = (RIGHT - LEFT) / max(len(values) - 1, 1)

    def y(value):
        return _r(BOTTOM - (value - low) / (high - low) * (BOTTOM - TOP)) if high > low else (TOP + BOTTOM) / 2

    points = [(_r(LEFT + i * step), y(value)) for i, value in enumerate(values)]
    path = "M" + " L".join(f"{x} {y_}" for x, y_ in points)
    return Sparkline(path, points[-1], y(sorted(values)[len(values) // 2]), low, high, len(values))


def ranges(rows):
    """Per (label, Spread) a bar from the 10th to the 90th percentile and a mark at the median, on
    one logarithmic scale: a warm load of 30 ms and a cold one of 3 s both show. Rows without
    figures are left out; None when no row has any."""
    rows = [(label, figures) for label, figures in rows if figures]
    if not rows:
        return None
    low = 10 ** math.floor(math.log10(max(min(f.low for _label, f in rows), 1)))
    high = max(10 ** math.ceil(math.log10(max(f.high for _label, f in rows) or 1)), low * 10)
    start, width = LEFT + RANGE_LABEL, RIGHT - LEFT - RANGE_LABEL - RANGE_VALUE

    def x(value):
        return _r(start + math.log10(max(value, low) / low) / math.log10(high / low) * width)

    row_height = (BOTTOM - TOP) / len(rows)
    bars = tuple(Range(label, _r(TOP + (i + 0.5) * row_height), x(f.low), max(x(f.high), x(f.low) + 2), x(f.median),
                       f.median) for i, (label, f) in enumerate(rows))
    decades = [low * 10 ** i for i in range(round(math.log10(high / low)) + 1)]
    return Ranges(bars, tuple((x(value), decade_label(value)) for value in decades))


def decade_label(ms):
    """'10 ms', '1 s', '100 s': a power of ten of milliseconds, as a scale's tick."""
    return f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s"


def _r(value):
    return round(value, 1)
