"""Paper-style result tables from a long table of per-run metrics.

The input is one row per (method, site, unit, metric) with a ``value`` and the
``run_dir`` it came from, so every number in a table is traceable to a run; a unit is one
(fold, seed). Tables follow ModalTune's Table 2: rows grouped by family (ordered by the
method class's ``family_order``), columns = sites + Overall (the mean over sites, as in the
papers), cells = mean ± std over units (ddof 1: folds x seeds, or seeds; the value alone when one
unit gives it, n = 1), best in bold and second underlined in the markdown version.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

METRIC_TITLES = {"balanced_accuracy": "Balanced accuracy", "c_index": "C-index", "auc": "AUC (macro)",
                 "accuracy": "Accuracy", "sensitivity": "Sensitivity (macro)", "specificity": "Specificity (macro)",
                 "f1": "F1 (macro)"}
#: metrics written unless a benchmark asks for others
DEFAULT_METRICS = ("balanced_accuracy", "c_index")


def _fmt(mean: float, std: float, n: int | None = None) -> str:
    """``mean ± std``; the value alone for a single unit (a spread of one value is not ``± 0.000``)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if n is not None and int(n) <= 1 or std is None or math.isnan(std):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {std:.3f}"


def _n(sub, key) -> int | None:
    return int(sub.loc[key, "n_units"]) if "n_units" in sub.columns else None


def _units(df: pd.DataFrame) -> pd.Series:
    if "unit" in df.columns:
        return df["unit"].astype(str)
    return "seed" + df["seed"].astype(str)


def summarise(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and std over units per (family, method, site), plus the Overall column.

    Overall is computed per unit (fold, seed) as the mean over the sites that method was scored on,
    then summarised over units, so its std reflects fold-to-fold and seed-to-seed variation.
    """
    df = results[results["metric"] == metric].copy()
    cols = ["family", "family_order", "method", "site", "mean", "std", "n_units"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df["unit"] = _units(df)
    if "family_order" not in df.columns:
        df["family_order"] = 100
    keys = ["family_order", "family", "method"]
    std = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0  # noqa: E731
    per_site = df.groupby(keys + ["site"])["value"].agg(mean="mean", std=std, n_units="count").reset_index()
    overall_unit = df.groupby(keys + ["unit"])["value"].mean().reset_index()
    overall = overall_unit.groupby(keys)["value"].agg(mean="mean", std=std, n_units="count").reset_index()
    overall["site"] = "Overall"
    return pd.concat([per_site, overall], ignore_index=True)[cols]


def wide_table(summary: pd.DataFrame, sites: list[str]) -> pd.DataFrame:
    """Rows = (family, method) in paper order, columns = sites + Overall, cells = 'mean ± std'."""
    cols = list(sites) + ["Overall"]
    rows = []
    order = summary["family_order"] if "family_order" in summary else pd.Series(100, index=summary.index)
    keys = sorted({(int(o), f, m) for o, f, m in zip(order, summary["family"], summary["method"])})
    for _, family, method in keys:
        sub = summary[(summary.family == family) & (summary.method == method)].set_index("site")
        row = {"family": family, "method": method}
        for c in cols:
            row[c] = _fmt(sub.loc[c, "mean"], sub.loc[c, "std"], _n(sub, c)) if c in sub.index else "n/a"
        rows.append(row)
    return pd.DataFrame(rows, columns=["family", "method"] + cols)


def markdown_table(summary: pd.DataFrame, sites: list[str], title: str) -> str:
    """Markdown with the best value per column in bold and the second underlined (ties share a mark)."""
    table = wide_table(summary, sites)
    cols = list(sites) + ["Overall"]
    marks: dict[tuple[str, str], str] = {}
    for c in cols:
        sub = summary[summary.site == c].dropna(subset=["mean"])
        # ties (at the printed precision) share a mark: all equal-best bold, the next value underlined
        shown = sub["mean"].map(lambda v: float(f"{v:.3f}"))   # exactly as _fmt prints (not Series.round)
        levels = sorted(shown.unique(), reverse=True)
        for method, v in zip(sub["method"], shown):
            if levels and v == levels[0]:
                marks[(method, c)] = "best"
            elif len(levels) > 1 and v == levels[1]:
                marks[(method, c)] = "second"
    lines = [f"**{title}**", "", "| Family | Method | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    last_family = None
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            mark = marks.get((r["method"], c))
            if mark == "best":
                v = f"**{v}**"
            elif mark == "second":
                v = f"<u>{v}</u>"
            cells.append(v)
        fam = r["family"] if r["family"] != last_family else ""
        last_family = r["family"]
        lines.append(f"| {fam} | {r['method']} | " + " | ".join(cells) + " |")
    if "n_units" in summary.columns and len(summary) and (summary["n_units"] <= 1).any():
        lines += ["", "Cells without ± come from one unit (n = 1: one seed or fold): a single value, no spread."]
    return "\n".join(lines) + "\n"


def write_tables(results: pd.DataFrame, sites: list[str], out: Path, stem: str, title: str,
                 metrics=DEFAULT_METRICS) -> dict[str, Path]:
    """Write markdown, CSV and JSON for each metric; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    md_parts = []
    for metric in metrics:
        name = METRIC_TITLES.get(metric, metric)
        summary = summarise(results, metric)
        if summary.empty:
            continue
        md_parts.append(markdown_table(summary, sites, f"{title}: {name}"))
        wide = wide_table(summary, sites)
        csv = out / f"{stem}_{metric}.csv"
        wide.to_csv(csv, index=False)
        summary.to_json(out / f"{stem}_{metric}.json", orient="records", indent=2)
        paths[f"{metric}_csv"] = csv
    md = out / f"{stem}.md"
    md.write_text("\n".join(md_parts))
    paths["markdown"] = md
    return paths


def write_efficiency(results: pd.DataFrame, fractions: list[float], out: Path, metrics=DEFAULT_METRICS) -> Path:
    """``data_efficiency.md`` (+ CSV): Overall test metric per method (rows) and training fraction
    (columns), mean ± std over units; the 100 % column is the main table's."""
    rows, md = [], []
    full = results[results.table == "table2"]
    cut = results[results.table == "efficiency"]
    for metric in metrics:
        cols = [f"{f:.0%}" for f in fractions]
        frames = {f: (full if f >= 1.0 else cut[cut["unit"].str.startswith(f"frac{round(f * 100):g}_")])
                  for f in fractions}
        summaries = {f: summarise(df, metric) for f, df in frames.items()}
        methods = sorted({(int(o), m) for sm in summaries.values() if not sm.empty
                          for o, m in zip(sm["family_order"], sm["method"])})
        if not methods:
            continue
        md += [f"**Data efficiency: Overall {METRIC_TITLES.get(metric, metric)}**", "",
               "| Method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for _, method in methods:
            cells = []
            for f in fractions:
                sm = summaries[f]
                hit = sm[(sm.method == method) & (sm.site == "Overall")]
                cells.append(_fmt(hit["mean"].iloc[0], hit["std"].iloc[0], hit["n_units"].iloc[0])
                             if len(hit) else "n/a")
            md.append(f"| {method} | " + " | ".join(cells) + " |")
            rows.append({"metric": metric, "method": method, **dict(zip(cols, cells))})
        md.append("")
    path = out / "data_efficiency.md"
    path.write_text("\n".join(md) + "\n")
    pd.DataFrame(rows).to_csv(out / "data_efficiency.csv", index=False)
    return path
