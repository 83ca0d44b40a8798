"""Metric tables for notebooks: one row per method, one column per metric, as markdown.

The notebooks show a stage's numbers (the network against its baselines) with
``IPython.display.Markdown(metrics_table(rows))``; the same ``rows`` (``{method: {metric: value}}``)
draw as grouped bars with :func:`~avatarme_edu.figures.maps.psnr_bar_chart`.
"""

from __future__ import annotations

import math


def format_number(v) -> str:
    """A metric for a table: 2 decimals from 10 up (PSNR in dB), else 4 significant digits; ``-`` for none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if not isinstance(v, (int, float)):
        return str(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.2f}" if abs(v) >= 10 else f"{v:.4g}"


def metrics_table(rows: dict[str, dict[str, float]], first: str = "method", best: dict[str, str] | None = None) -> str:
    """Markdown table of ``rows[method][metric]``; columns in first-seen order, a missing value is ``-``.

    ``best``: metric -> ``"higher"`` or ``"lower"``; the best value of that column is set in bold.
    """
    if not rows:
        raise ValueError("rows is empty; expected {method: {metric: value}}")
    best = best or {}
    bad = {k: v for k, v in best.items() if v not in ("higher", "lower")}
    if bad:
        raise ValueError(f"best must map a metric to 'higher' or 'lower', got {bad}")
    metrics: list[str] = []
    for row in rows.values():
        metrics += [m for m in row if m not in metrics]
    winners = {}
    for m, how in best.items():
        values = [(row[m], method) for method, row in rows.items()
                  if isinstance(row.get(m), (int, float)) and not math.isnan(row[m])]
        if values:
            winners[m] = (max if how == "higher" else min)(values)[1]
    lines = ["| " + " | ".join([first, *metrics]) + " |", "|" + "---|" * (len(metrics) + 1)]
    for method, row in rows.items():
        cells = []
        for m in metrics:
            text = format_number(row.get(m))
            cells.append(f"**{text}**" if winners.get(m) == method else text)
        lines.append("| " + " | ".join([method, *cells]) + " |")
    return "\n".join(lines)

