"""``eeg2image table DIR``: one results table from every evaluated run under DIR (sweeps, comparisons).

Runs are grouped by (configuration, subject, weight selection); the per-seed results of runs that split
one configuration's seeds are pooled, then summarised as mean ± sd over seeds. The configuration name is
the run folder's first path component below DIR (a sweep's config name), or the run folder itself.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ..io import DataFormatError, read_json, write_json
from .retrieval import aggregate

COLUMNS = ("top1", "top5", "mrr")


def merge_results(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    files = sorted(root.rglob("metrics.json"))
    if not files:
        raise DataFormatError(f"{root}: no metrics.json below it; run `eeg2image evaluate` on the runs first")
    pooled: dict[tuple[str, str, str], dict[str, dict]] = defaultdict(dict)
    protocols: dict[str, dict] = {}
    for f in files:
        m = read_json(f)
        rel = f.parent.relative_to(root)
        name = rel.parts[0] if rel.parts else root.name
        protocols.setdefault(name, m["protocol"])
        for sel in ("final", "validation_selected"):
            for subj, r in (m.get(sel) or {}).items():
                if subj == "across_subjects":
                    continue
                for seed, vals in r["per_seed"].items():
                    key = (name, subj, sel)
                    if seed in pooled[key]:
                        raise DataFormatError(f"{f}: seed {seed} of {name}/{subj} appears in two runs")
                    pooled[key][seed] = vals
    rows = []
    for (name, subj, sel), seeds in sorted(pooled.items()):
        rows.append(
            {
                "config": name,
                "subject": subj,
                "selection": sel,
                "seeds": sorted(seeds, key=int),
                "aggregate": aggregate(list(seeds.values())),
            }
        )
    return {"rows": rows, "protocols": protocols}


def table_markdown(merged: dict[str, Any], descriptions: dict[str, str] | None = None) -> str:
    """The merged rows as a markdown table; ``descriptions`` (config name -> what it is) become a legend."""
    lines = ["| config | subject | weights | seeds | top-1 % | top-5 % | MRR |", "|---|---|---|---|---|---|---|"]
    for r in merged["rows"]:
        a = r["aggregate"]
        cells = [f"{100 * a[k]['mean']:.2f} ± {100 * a[k]['sd']:.2f}" for k in ("top1", "top5")]
        cells.append(f"{a['mrr']['mean']:.3f} ± {a['mrr']['sd']:.3f}")
        lines.append(
            f"| {r['config']} | {r['subject']} | {r['selection']} | {len(r['seeds'])} | " + " | ".join(cells) + " |"
        )
    if descriptions:
        lines += ["", "| config | what it is |", "|---|---|"]
        lines += [f"| {name} | {text} |" for name, text in descriptions.items()]
    return "\n".join(lines) + "\n"


def write_table(root: str | Path, descriptions: dict[str, str] | None = None) -> tuple[Path, Path]:
    """``results.json`` and ``results.md`` from every ``metrics.json`` below ``root``; ``descriptions`` (config
    name -> what the row is and what changed) are saved with them."""
    root = Path(root)
    merged = merge_results(root)
    if descriptions:
        merged["descriptions"] = dict(descriptions)
    write_json(root / "results.json", merged)
    (root / "results.md").write_text(table_markdown(merged, descriptions))
    return root / "results.json", root / "results.md"
