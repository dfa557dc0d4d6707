"""Small charts as inline SVG, drawn on the server: no chart library, nothing to download.

Each chart has a title and a text table of its values beside it for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["bar_chart"]


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, width: int = 560, height: int = 160,
              unit: str = "") -> str:
    """A caption, then vertical bars labelled below with values above (for a `<figure>`); an empty series says
    so instead of drawing nothing."""
    label = escape(title)
    if not bars:
        return f'<p class="empty">{label}: no data yet.</p>'
    top = max(value for _, value in bars) or 1.0
    pad, base = 4, height - 22
    slot = (width - 2 * pad) / len(bars)
    parts = [f"<figcaption>{label}</figcaption>",
             f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{label}">',
             f"<title>{label}</title>"]
    for i, (name, value) in enumerate(bars):
        bar_h = (base - 16) * value / top
        x = pad + i * slot + slot * 0.15
        w = slot * 0.7
        y = base - bar_h
        text = f"{value:g}{unit}"
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bar_h:.1f}"><title>'
                     f"{escape(name)}: {escape(text)}</title></rect>")
        if value:
            parts.append(f'<text x="{x + w / 2:.1f}" y="{y - 3:.1f}" class="value">{escape(text)}</text>')
        if len(bars) <= 12 or i % max(1, len(bars) // 12) == 0:
            parts.append(f'<text x="{x + w / 2:.1f}" y="{height - 6}" class="label">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
