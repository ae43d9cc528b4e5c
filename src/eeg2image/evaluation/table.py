"""``eeg2image table DIR``: one results table from every evaluated run under DIR (sweeps, comparisons).

Runs are grouped by (configuration, subject, weight selection); the per-seed results of runs that split
one configuration's seeds are pooled, then summarised as mean ± sd over seeds. The configuration name is
the run folder's first path component below DIR (a sweep's config name), or the run folder itself.
Reconstruction metrics (``eeg2image evaluate-recon``: a ``metrics.json`` with ``per_round``) form a table of
their own: every (seed, round) pooled per configuration, mean ± sd.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..io import DataFormatError, atomic_path, read_json, rehearsal_label, write_json
from .retrieval import aggregate

COLUMNS = ("top1", "top5", "mrr")


def merge_results(root: str | Path) -> dict[str, Any]:
    root = Path(root)
    files = sorted(root.rglob("metrics.json"))
    if not files:
        raise DataFormatError(f"{root}: no metrics.json below it; run `eeg2image evaluate` on the runs first")
    pooled: dict[tuple[str, str, str], dict[str, dict]] = defaultdict(dict)
    protocols: dict[str, dict] = {}
    recon: dict[str, dict[str, dict]] = defaultdict(dict)
    for f in files:
        m = read_json(f)
        rel = f.parent.relative_to(root)
        name = rel.parts[0] if rel.parts else root.name
        protocols.setdefault(name, m["protocol"])
        if "per_round" in m:  # reconstruction metrics
            for rnd, vals in m["per_round"].items():
                recon[name][f"{rel.as_posix()}/{rnd}"] = {"values": vals, "better": m.get("better", {})}
            continue
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
    recon_rows = []
    for name, rounds in sorted(recon.items()):
        keys = list(dict.fromkeys(k for r in rounds.values() for k in r["values"]))  # the metrics' own order
        summary = {}
        for k in keys:
            vals = [r["values"][k] for r in rounds.values() if k in r["values"]]
            sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            summary[k] = {"mean": float(np.mean(vals)), "sd": sd, "n": len(vals)}
        better = {k: v for r in rounds.values() for k, v in r["better"].items()}
        recon_rows.append({"config": name, "rounds": sorted(rounds), "metrics": summary, "better": better})
    if not rows and not recon_rows:
        raise DataFormatError(f"{root}: the metrics.json files below it hold no results")
    return {"rows": rows, "reconstruction": recon_rows, "protocols": protocols}


def validation_choice(root: str | Path) -> dict[str, Any] | None:
    """Among the configurations below ``root`` (a sweep over layers, views or encoders), the one best on the
    validation concepts. Each run's score is read from its training history only (``units/*/history.json``: each
    seed's best validation score on the rule the run selected on, averaged over its seeds and units), never from a
    ``metrics.json``: no test number takes part in the choice. Configurations without validation are not
    candidates; a tie goes to the first name in sorted order. None when nothing below ``root`` validated."""
    root = Path(root)
    scores: dict[str, list[float]] = defaultdict(list)
    rules = set()
    for hist in sorted(root.rglob("units/*/history.json")):
        run = hist.parents[2]
        rel = run.relative_to(root)
        name = rel.parts[0] if rel.parts else root.name
        h = read_json(hist)
        key = f"val_{h.get('select_on', 'top1')}"
        epochs = [e for e in h.get("epochs", []) if key in e]
        if epochs:
            rules.add(key)
            scores[name] += [max(e[key][i] for e in epochs) for i in range(len(epochs[0][key]))]
    scored = {n: float(np.mean(v)) for n, v in sorted(scores.items()) if v}
    if not scored:
        return None
    best = max(scored, key=lambda n: scored[n])
    return {
        "chosen": best,
        "validation": scored,
        "rule": f"each seed's best {'/'.join(sorted(rules))} on the validation concepts (training histories only), "
        "mean over seeds and units; the test partition takes no part",
    }


def table_markdown(merged: dict[str, Any], descriptions: dict[str, str] | None = None) -> str:
    """The merged rows as a markdown table; ``descriptions`` (config name -> what it is) become a legend."""
    lines = [f"**{merged['rehearsal']}**", ""] if merged.get("rehearsal") else []
    if merged["rows"]:
        lines += ["| config | subject | weights | seeds | top-1 % | top-5 % | MRR |", "|---|---|---|---|---|---|---|"]
    for r in merged["rows"]:
        a = r["aggregate"]
        cells = [f"{100 * a[k]['mean']:.2f} ± {100 * a[k]['sd']:.2f}" for k in ("top1", "top5")]
        cells.append(f"{a['mrr']['mean']:.3f} ± {a['mrr']['sd']:.3f}")
        lines.append(
            f"| {r['config']} | {r['subject']} | {r['selection']} | {len(r['seeds'])} | " + " | ".join(cells) + " |"
        )
    recon = merged.get("reconstruction") or []
    if recon:
        keys = list(dict.fromkeys(k for r in recon for k in r["metrics"]))
        arrows = {k: {"higher": " ↑", "lower": " ↓"}.get(recon[0]["better"].get(k, ""), "") for k in keys}
        title = ["Reconstruction (mean ± sd over every seed and round):", ""]
        lines += ["", *title] if lines else title
        lines += ["| config | seed-rounds | " + " | ".join(f"{k}{arrows[k]}" for k in keys) + " |"]
        lines += ["|---|---|" + "---|" * len(keys)]
        for r in recon:
            cells = [
                f"{r['metrics'][k]['mean']:.3f} ± {r['metrics'][k]['sd']:.3f}" if k in r["metrics"] else "n/a"
                for k in keys
            ]
            n = len(r["rounds"])
            lines.append(f"| {r['config']} | {n} | " + " | ".join(cells) + " |")
    choice = merged.get("validation_choice")
    if choice:
        chosen = [
            r for r in merged["rows"] if r["config"] == choice["chosen"] and r["selection"] == "validation_selected"
        ]
        lines += ["", f"**Chosen on the validation concepts: `{choice['chosen']}`** ({choice['rule']}):", ""]
        lines += ["| config | validation score | chosen |", "|---|---|---|"]
        lines += [
            f"| {n} | {100 * v:.2f} | {'yes' if n == choice['chosen'] else ''} |"
            for n, v in choice["validation"].items()
        ]
        for r in chosen:
            a = r["aggregate"]
            lines.append(
                f"\nIts test numbers ({r['subject']}, validation-selected weights, {len(r['seeds'])} seeds): top-1 "
                f"{100 * a['top1']['mean']:.2f} ± {100 * a['top1']['sd']:.2f} %, top-5 "
                f"{100 * a['top5']['mean']:.2f} ± {100 * a['top5']['sd']:.2f} %. No other row of this table was "
                "chosen by anything, and none by its test number."
            )
    if merged["rows"]:
        lines += ["", baseline_note(merged)]
    if descriptions:
        lines += ["", "| config | what it is |", "|---|---|"]
        lines += [f"| {name} | {text} |" for name, text in descriptions.items()]
    return "\n".join(lines) + "\n"


#: The classical baselines every learned retrieval result is read beside (``training.closed_form``).
BASELINES = ("ridge", "riemann")


def baseline_note(merged: dict[str, Any]) -> str:
    """Which rows are the classical baselines, or the warning that the table lacks them."""
    encoders = {n: str(p.get("eeg_encoder", "")) for n, p in merged["protocols"].items()}
    rows = {r["config"] for r in merged["rows"]}
    found = sorted(n for n in rows if encoders.get(n) in BASELINES)
    if found:
        return f"Classical baselines on the same data: {', '.join(f'`{n}` ({encoders[n]})' for n in found)}."
    return (
        "**No classical baseline among these rows**: read a learned number beside ridge and Riemannian rows on the "
        "same data and seeds (`--encoder ridge`, `--encoder riemann`; seconds to fit)."
    )


def write_table(
    root: str | Path, descriptions: dict[str, str] | None = None, *, choose: bool = False
) -> tuple[Path, Path]:
    """``results.json`` and ``results.md`` from every ``metrics.json`` below ``root``; ``descriptions`` (config
    name -> what the row is and what changed) are saved with them. ``choose``: also the configuration chosen on the
    validation concepts (``validation_choice``) and its test numbers."""
    root = Path(root)
    merged = merge_results(root)
    if choose:
        merged["validation_choice"] = validation_choice(root)
    if label := rehearsal_label(root):
        merged["rehearsal"] = label
    if descriptions:
        merged["descriptions"] = dict(descriptions)
    write_json(root / "results.json", merged)
    with atomic_path(root / "results.md") as tmp:
        tmp.write_text(table_markdown(merged, descriptions))
    return root / "results.json", root / "results.md"
