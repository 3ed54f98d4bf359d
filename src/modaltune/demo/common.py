"""What every demo shares: a guard against mixing settings in one directory, and the oracle row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..utils import write_json

__all__ = ["check_settings", "oracle_row", "with_oracle"]


def check_settings(out: Path, settings: dict) -> None:
    """Refuse a demo directory made with other settings (a re-run into it resumes otherwise)."""
    path = out / "demo_settings.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            raise InputError(f"this demo directory was made with other settings {old}, not {settings}", file=out,
                             fix="use another --out, or delete the directory")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, settings)


def oracle_row(oracle: dict[str, float], columns) -> str:
    """The markdown row of the oracle C-index (the planted true risk) under a C-index table."""
    cells = " | ".join("n/a" if not np.isfinite(oracle.get(c, np.nan)) else f"{oracle[c]:.3f}" for c in columns)
    return f"| Oracle | true risk (ceiling) | {cells} |"


def with_oracle(markdown: str, oracle: dict[str, float], sites) -> str:
    """Append the oracle row after the last row of the C-index table of a Table-2/3 markdown file."""
    lines = markdown.splitlines()
    title = next((i for i, line in enumerate(lines) if line.startswith("**") and "C-index" in line), None)
    if title is None:
        return markdown
    last = title
    for i in range(title + 1, len(lines)):
        if lines[i].startswith("**"):
            break
        if lines[i].startswith("|"):
            last = i
    lines.insert(last + 1, oracle_row(oracle, list(sites) + ["Overall"]))
    return "\n".join(lines) + "\n"
