"""A run's timeline as one self-contained HTML page (inline SVG, no scripts, no fetches).

A Gantt chart for people without a tracing backend: one row per node, one bar per attempt
coloured by tier, rejected or failed attempts hatched and outlined in red, escalations
marked with an arrow into the next tier's bar, the cost of each node at the right, and a
tooltip on every bar (tier, model, time, cost, verdict). Written by
``orchestrator show RUN_ID --timeline FILE``.
"""

from __future__ import annotations

import html
import math
from datetime import datetime
from pathlib import Path

from orchestrator.results import Attempt, NodeResult, RunResult

__all__ = ["render_timeline", "write_timeline"]

_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f")
_PYTHON_COLOUR = "#9e9e9e"
_FAIL = "#c62828"
_LABEL_W, _COST_W, _CHART_W = 220, 260, 760
_ROW_H, _TOP, _BAR_H = 30, 40, 18


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _tier_colours(result: RunResult) -> dict[str, str]:
    colours: dict[str, str] = {}
    for node in result.nodes:
        for attempt in node.attempts:
            if attempt.tier not in colours:
                colours[attempt.tier] = (
                    _PYTHON_COLOUR
                    if attempt.tier == "python"
                    else _PALETTE[len([t for t in colours if t != "python"]) % len(_PALETTE)]
                )
    return colours


def _span(result: RunResult) -> tuple[datetime, float]:
    end = result.finished_at
    for node in result.nodes:
        for attempt in node.attempts:
            if attempt.finished_at is not None and attempt.finished_at > end:
                end = attempt.finished_at
    start = min(
        [result.started_at] + [a.started_at for node in result.nodes for a in node.attempts],
    )
    return start, max((end - start).total_seconds(), 1e-3)


def _tick_step(total_s: float) -> float:
    raw = total_s / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def _axis(total_s: float, height: int) -> list[str]:
    step = _tick_step(total_s)
    parts = []
    tick = 0.0
    while tick <= total_s + 1e-9:
        x = _LABEL_W + tick / total_s * _CHART_W
        parts.append(
            f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height}" class="grid"/>'
            f'<text x="{x:.1f}" y="{_TOP - 10}" class="tick">{tick:g}s</text>'
        )
        tick += step
    return parts


def _attempt_title(node: NodeResult, attempt: Attempt, duration_s: float) -> str:
    lines = [
        f"{node.id} · attempt {attempt.number} on {attempt.tier}",
        f"model: {attempt.model or '(python)'}",
        f"time: {duration_s:.2f}s · cost: ${attempt.cost_usd:.5f}",
    ]
    if attempt.escalated_from is not None:
        lines.append(f"escalated from attempt {attempt.escalated_from}")
    if attempt.verdict is not None:
        verdict = "passed" if attempt.verdict.passed else "rejected"
        lines.append(f"verdict: {verdict}: {attempt.verdict.reason}")
    if attempt.error:
        lines.append(f"error: {attempt.error}")
    if attempt.simulated:
        lines.append("simulated answer")
    return "\n".join(lines)


def _row(
    index: int,
    *,
    node: NodeResult,
    start: datetime,
    total_s: float,
    finished: datetime,
    colours: dict[str, str],
) -> list[str]:
    y = _TOP + index * _ROW_H
    bar_y = y + (_ROW_H - _BAR_H) / 2
    parts = [
        f'<text x="8" y="{y + _ROW_H / 2 + 4:.1f}" class="label">{_e(node.id)}'
        f'<tspan class="status {_e(node.status)}"> {_e(node.status)}</tspan></text>'
    ]
    for attempt in node.attempts:
        begin = (attempt.started_at - start).total_seconds()
        end = ((attempt.finished_at or finished) - start).total_seconds()
        x = _LABEL_W + begin / total_s * _CHART_W
        width = max((end - begin) / total_s * _CHART_W, 2.0)
        colour = colours[attempt.tier]
        failed = not attempt.passed
        outline = f' stroke="{_FAIL}" stroke-width="2"' if failed else ""
        title = _e(_attempt_title(node, attempt, end - begin))
        parts.append(
            f'<g class="attempt{" failed" if failed else ""}" data-tier="{_e(attempt.tier)}">'
            f"<title>{title}</title>"
            f'<rect x="{x:.1f}" y="{bar_y:.1f}" width="{width:.1f}" height="{_BAR_H}" '
            f'rx="3" fill="{colour}"{outline}/>'
        )
        if failed:
            parts.append(
                f'<rect x="{x:.1f}" y="{bar_y:.1f}" width="{width:.1f}" height="{_BAR_H}" '
                'fill="url(#hatch)"/>'
            )
        if attempt.escalated_from is not None:
            mid = bar_y + _BAR_H / 2
            parts.append(
                f'<path d="M{x - 9:.1f},{mid - 5:.1f} L{x - 1:.1f},{mid:.1f} '
                f'L{x - 9:.1f},{mid + 5:.1f} Z" class="escalation"/>'
            )
        parts.append("</g>")
    parts.append(
        f'<text x="{_LABEL_W + _CHART_W + 12}" y="{y + _ROW_H / 2 + 4:.1f}" class="cost">'
        f"${node.cost_usd:.5f}"
        + (f" (wasted ${node.wasted_cost_usd:.5f})" if node.wasted_cost_usd else "")
        + "</text>"
    )
    return parts


def _legend(colours: dict[str, str], y: int) -> list[str]:
    parts = []
    x = _LABEL_W
    for tier, colour in colours.items():
        parts.append(
            f'<rect x="{x}" y="{y}" width="14" height="14" rx="2" fill="{colour}"/>'
            f'<text x="{x + 20}" y="{y + 11}" class="tick-left">{_e(tier)}</text>'
        )
        x += 30 + 8 * len(tier)
    parts.append(
        f'<rect x="{x}" y="{y}" width="14" height="14" fill="#ddd" stroke="{_FAIL}" '
        f'stroke-width="2"/><rect x="{x}" y="{y}" width="14" height="14" fill="url(#hatch)"/>'
        f'<text x="{x + 20}" y="{y + 11}" class="tick-left">failed or rejected</text>'
    )
    x += 150
    parts.append(
        f'<path d="M{x},{y + 2} L{x + 8},{y + 7} L{x},{y + 12} Z" class="escalation"/>'
        f'<text x="{x + 14}" y="{y + 11}" class="tick-left">escalated</text>'
    )
    return parts


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222}
h1{font-size:18px;margin:0 0 4px} .meta{color:#555;font-size:13px;margin-bottom:12px}
.sim{background:#fff3cd;border:1px solid #e0c060;padding:1px 6px;border-radius:3px}
svg text{font-size:12px} .label{font-weight:600} .tick{text-anchor:middle;fill:#666}
.tick-left{fill:#444} .grid{stroke:#eee} .cost{fill:#333;font-variant-numeric:tabular-nums}
.status{font-weight:400;fill:#777} .status.failed,.status.skipped{fill:#c62828}
.escalation{fill:#222} .attempt:hover rect{opacity:.8}
"""


def render_timeline(result: RunResult) -> str:
    """Return the timeline of ``result`` as a complete HTML document."""
    colours = _tier_colours(result)
    start, total_s = _span(result)
    rows = len(result.nodes)
    chart_bottom = _TOP + max(rows, 1) * _ROW_H
    height = chart_bottom + 44
    width = _LABEL_W + _CHART_W + _COST_W
    body: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="run timeline">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" '
        'stroke="#fff" stroke-width="2" stroke-opacity=".7"/></pattern></defs>',
        *_axis(total_s, chart_bottom),
    ]
    for index, node in enumerate(result.nodes):
        body.extend(
            _row(
                index,
                node=node,
                start=start,
                total_s=total_s,
                finished=result.finished_at,
                colours=colours,
            )
        )
    body.extend(_legend(colours, chart_bottom + 18))
    body.append("</svg>")
    simulated = ' <span class="sim">simulated answers</span>' if result.simulated else ""
    meta = (
        f"run {_e(result.run_id)} · {_e(result.status)} · {result.wall_s:.2f}s · "
        f"cost ${result.cost_usd:.5f} (wasted ${result.wasted_cost_usd:.5f})"
        + (f" · trace {_e(result.trace_id)}" if result.trace_id else "")
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Timeline · {_e(result.run_id)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{_e(result.goal)}</h1><div class="meta">{meta}{simulated}</div>'
        + "".join(body)
        + "</body></html>\n"
    )


def write_timeline(result: RunResult, path: str | Path) -> Path:
    """Write :func:`render_timeline` to ``path`` (``.html`` or ``.htm``); returns the path.

    Raises:
        ValueError: If the file name does not end in ``.html`` or ``.htm``.
    """
    target = Path(path)
    if target.suffix.lower() not in {".html", ".htm"}:
        raise ValueError(
            f"timeline file {str(target)!r} must end in .html (a self-contained page); "
            "PNG output is not supported"
        )
    target.write_text(render_timeline(result), encoding="utf-8")
    return target
