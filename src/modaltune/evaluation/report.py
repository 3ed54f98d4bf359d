"""Console rendering of a run's ``metrics.json`` (per site + overall)."""

from __future__ import annotations

import math

_COLUMNS = (("balanced_accuracy", "bal. acc."), ("c_index", "C-index"), ("ipcw_c_index", "IPCW C"),
            ("logrank_p", "log-rank p"), ("n", "n test"), ("n_events", "events"))


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}"
    return str(v)


def format_metrics(metrics: dict, title: str = "") -> str:
    """A fixed-width table: one row per site (``overall`` last), the usual metric columns."""
    sites = [s for s in metrics if s != "overall" and isinstance(metrics[s], dict)]
    if "overall" in metrics:
        sites.append("overall")
    head = ["site"] + [name for _, name in _COLUMNS]
    rows = [[s] + [_cell(metrics[s].get(k)) for k, _ in _COLUMNS] for s in sites]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [title] if title else []
    lines += [fmt(head), "-" * (sum(widths) + 2 * (len(widths) - 1))] + [fmt(r) for r in rows]
    return "\n".join(lines)


def print_metrics(metrics: dict, title: str = "") -> None:
    """Print :func:`format_metrics`."""
    print(format_metrics(metrics, title))
    print()
