"""Charts for the reports page, drawn on the server as SVG text (pure functions, no I/O).

Why server-side SVG rather than a JavaScript chart library: the console's Content-Security-Policy
allows no script at all, every page must work without JavaScript, and there is no build step; a
chart library would need all three relaxed (or a vendored bundle to audit and update). The charts
here are simple (stacked bars per day, one series per facility or jurisdiction), so a hundred
lines of SVG produce them, printable and accessible (each bar has a <title>, and the same figures
are in the table beside the chart). Values are exact decimals from the API; they are turned into
bar heights only here, as pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from xml.sax.saxutils import escape

__all__ = ["Series", "stacked_bars", "PALETTE"]

PALETTE = ("#1f6feb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#be185d",
           "#4d7c0f")
WIDTH, HEIGHT = 720, 260
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 64, 48, 16
SERIES_MAX = len(PALETTE)              # beyond this, the rest are summed as "other"


@dataclass(frozen=True)
class Series:
    name: str
    values: dict[str, Decimal]         # category (e.g. day) -> value


def _nice_ceiling(v: Decimal) -> Decimal:
    if v <= 0:
        return Decimal(1)
    exp = len(str(int(v))) - 1
    step = Decimal(10) ** exp
    for m in (1, 2, 5, 10):
        if v <= m * step:
            return m * step
    return 10 * step


def stacked_bars(title: str, categories: list[str], series: list[Series], *,
                 unit: str = "") -> str:
    """An SVG document: one stacked bar per category, one colour per series, with a legend."""
    if len(series) > SERIES_MAX:
        rest = series[SERIES_MAX - 1:]
        other: dict[str, Decimal] = {}
        for s in rest:
            for c, v in s.values.items():
                other[c] = other.get(c, Decimal(0)) + v
        series = series[:SERIES_MAX - 1] + [Series("other", other)]
    totals = {c: sum((s.values.get(c, Decimal(0)) for s in series), Decimal(0))
              for c in categories}
    top = _nice_ceiling(max(totals.values(), default=Decimal(0)))
    plot_w = WIDTH - MARGIN_LEFT - 8
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    slot = plot_w / max(1, len(categories))
    bar_w = max(2.0, slot * 0.7)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT + 24}" '
           f'role="img" aria-label="{escape(title, {chr(34): "&quot;"})}" class="chart">',
           f"<title>{escape(title)}</title>"]
    for i in range(5):                                   # grid and y labels
        v = top * i / 4
        y = MARGIN_TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}" '
                   f'stroke="#ddd" stroke-width="1"/>')
        out.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'font-size="11" fill="#444">{escape(_label(v))}{escape(unit)}</text>')
    for ci, c in enumerate(categories):
        x = MARGIN_LEFT + ci * slot + (slot - bar_w) / 2
        base: float = MARGIN_TOP + plot_h
        for si, s in enumerate(series):
            v = s.values.get(c, Decimal(0))
            if v <= 0:
                continue
            h = float(v / top) * plot_h
            base -= h
            out.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                       f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(c)} '
                       f'{escape(s.name)}: {escape(str(v))}{escape(unit)}</title></rect>')
        if len(categories) <= 16 or ci % max(1, len(categories) // 8) == 0:
            out.append(f'<text x="{x + bar_w / 2:.1f}" y="{MARGIN_TOP + plot_h + 16}" '
                       f'text-anchor="middle" font-size="11" fill="#444">'
                       f'{escape(c[5:] if len(c) == 10 else c)}</text>')
    lx = MARGIN_LEFT
    for si, s in enumerate(series):                      # legend
        out.append(f'<rect x="{lx}" y="{HEIGHT}" width="10" height="10" '
                   f'fill="{PALETTE[si % len(PALETTE)]}"/>')
        out.append(f'<text x="{lx + 14}" y="{HEIGHT + 9}" font-size="11" fill="#222">'
                   f'{escape(s.name)}</text>')
        lx += 24 + 7 * len(s.name)
    out.append("</svg>")
    return "".join(out)


def _label(v: Decimal) -> str:
    return f"{v:.0f}" if v == v.to_integral_value() else f"{v:.2f}"
