"""``eeg2image evaluate RUN``: the only code that reads the test partition.

For every unit of a trained run and every subject it is evaluated on: the test EEG (one query per test
image, the mean of all its repetitions) is embedded by each seed's EEG encoder, the test images' views by
the same seed's target model (eval mode), and ranked by cosine similarity. Written to the run folder:

- ``metrics.json``: protocol; for the final-epoch weights and (when the run validated) the
  validation-selected weights: per subject, per seed ``top1``, ``top5`` (fractions, N-way over all test
  images), ``mrr``, ``<k>way_top1`` (fixed distractor sets), NeuralBench's ``neuralbench_auc`` and in-batch
  ``neuralbench_batch64_top1`` / ``_top5`` (``retrieval.neuralbench_metrics``), and mean / sd / n over seeds;
  across subjects (mean / sd over subjects of the per-subject seed means); the transductive Hungarian top-k apart;
- ``distractors.json``: the k-way distractor sets (drawn once with ``eval.distractor_seed``);
- ``report.md``: the same as tables, the transductive table separate and labelled;
- ``top5.png``: EEG queries with their top-5 images, the image actually seen framed in green.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets import RetrievalSplit, load_pairs
from ..io import DataFormatError, atomic_path, folder_lock, read_json, rehearsal_label, write_json, write_manifest
from ..models.retrieval import SeedStack, embed_eeg, embed_targets, load_stack
from ..runs import SELECTIONS, RunConfig, Unit, config_summary, read_run_config, subject_folder, unit_folder, units_of
from .retrieval import aggregate, cosine_similarity, distractor_sets, hungarian_topk, retrieval_metrics

#: NeuralBench's metrics in the report (``retrieval.neuralbench_metrics``), under the names its papers use.
NEURALBENCH_COLUMNS = {
    "neuralbench_auc": "NeuralBench retrieval AUC",
    "neuralbench_batch64_top1": "NeuralBench in-batch top-1",
    "neuralbench_batch64_top5": "NeuralBench in-batch top-5",
}


def _distractors(run_dir: Path, cfg: RunConfig, n_images: int) -> dict[int, np.ndarray]:
    """k-way distractor sets for a gallery of ``n_images``, drawn once and saved (reused on re-evaluation)."""
    path = run_dir / "distractors.json"
    saved = read_json(path) if path.is_file() else {}
    key = str(n_images)
    ks = [k for k in cfg.eval.kway if 2 <= k < n_images]
    entry = saved.get(key, {})
    if entry.get("seed") != cfg.eval.distractor_seed or sorted(map(int, entry.get("sets", {}))) != sorted(ks):
        seed = cfg.eval.distractor_seed
        entry = {"seed": seed, "sets": {str(k): distractor_sets(n_images, k, seed).tolist() for k in ks}}
        saved[key] = entry
        write_json(path, saved)
    return {int(k): np.asarray(v, dtype=np.int64) for k, v in entry["sets"].items()}


def _check_fits(stack: SeedStack, test: RetrievalSplit, source: Path) -> None:
    """The test EEG and embeddings have the shapes the trained model was built for."""
    m = stack.config
    if m.experts is not None:  # one width per modality
        for mod, dim in m.modality_dims.items():
            got_dim = test.views[m.experts.view_of(mod)].shape[1]
            if got_dim != dim:
                raise DataFormatError(
                    f"{source}: the {mod!r} expert was trained against {dim}-d embeddings; the test view "
                    f"{m.experts.view_of(mod)!r} is {got_dim}-d (made with another encoder?)"
                )
    for view, dim in m.view_dims.items():  # the layer router's views, each of its own width
        if view in test.views and test.views[view].shape[1] != dim:
            raise DataFormatError(
                f"{source}: the layer view {view!r} was {dim}-d in training; the test view is "
                f"{test.views[view].shape[1]}-d (made with another encoder?)"
            )
    first = m.target.layer_views[0] if m.view_dims else next(iter(test.views))
    got = (test.eeg.shape[2], test.eeg.shape[3], test.views[first].shape[1])
    if m.experts is not None:
        got = (*got[:2], m.dim)
    if got != (m.n_chans, m.n_times, m.dim):
        raise DataFormatError(
            f"{source}: the model takes EEG of {m.n_chans} channels x {m.n_times} times and {m.dim}-d embeddings; "
            f"the test data has {got[0]} x {got[1]} and {got[2]}-d (were they made with the training data's settings?)"
        )


def _scores(stack: SeedStack, test: RetrievalSplit, unit: Unit) -> dict[str, np.ndarray]:
    """(S, Q, N) cosine similarities of every seed's EEG queries and test-image targets, by key (``""`` for a
    model with one; the experts' keys otherwise)."""
    q, sub, img = test.queries()
    if not np.array_equal(img, np.arange(test.n_images)):
        raise DataFormatError("evaluation expects one query per test image, in image order")
    if not unit.subject_aware:
        sub = torch.zeros_like(sub)
    e, g = embed_eeg(stack, q, sub), embed_targets(stack, test.views)
    if not isinstance(e, dict):
        e, g = {"": e}, {"": g}
    return {
        k: np.stack([cosine_similarity(e[k][s].double().numpy(), g[k][s].double().numpy()) for s in range(len(e[k]))])
        for k in e
    }


def evaluate_run(run_dir: str | Path, *, log=print) -> dict[str, Any]:
    """Score every unit's weights on the test partition; holds the run folder's lock (a ``train`` still writing
    there refuses this evaluation, and this evaluation a ``train``)."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    with folder_lock(run_dir, "evaluate"):
        return _evaluate(run_dir, cfg, log)


def _evaluate(run_dir: Path, cfg: RunConfig, log) -> dict[str, Any]:
    views = cfg.train.required_views()
    tests: dict[int, RetrievalSplit] = {}
    results: dict[str, dict[str, Any]] = {sel: {} for sel in SELECTIONS}
    transductive: dict[str, dict[str, Any]] = {sel: {} for sel in SELECTIONS}
    picture_source = None
    for unit in units_of(cfg):
        folder = unit_folder(run_dir, unit)
        for sel, fname in SELECTIONS.items():
            if sel == "validation_selected" and not (folder / fname).is_file():
                continue
            stack, meta = load_stack(folder / fname, engine=cfg.engine)
            if meta.get("seeds") != list(cfg.seeds):
                got = meta.get("seeds")
                raise DataFormatError(f"{folder / fname}: weights of seeds {got}, the run's config says {cfg.seeds}")
            for s in unit.eval_subjects:
                if s not in tests:  # the test partition, read here and nowhere else
                    d = cfg.data
                    tests[s] = load_pairs(
                        subject_folder(cfg, s), d.store, "test", views, d.image_encoder, d.evnet_encoder, d.channels
                    )
                test = tests[s]
                _check_fits(stack, test, folder / fname)
                by_key = _scores(stack, test, unit)
                experts = cfg.train.experts
                sims = by_key[experts.select_key if experts else ""]
                kway = _distractors(run_dir, cfg, test.n_images)
                per_seed = {str(seed): retrieval_metrics(sims[i], kway=kway) for i, seed in enumerate(cfg.seeds)}
                key = f"sub-{s:02d}"
                results[sel][key] = {
                    "unit": unit.name,
                    "n_images": test.n_images,
                    "per_seed": per_seed,
                    "aggregate": aggregate(list(per_seed.values())),
                    "epoch": meta.get("epoch"),
                }
                if experts:  # the selection key's numbers above; every key's here
                    results[sel][key]["key"] = experts.select_key
                    results[sel][key]["per_key"] = {}
                    for k, sk in by_key.items():
                        ps = [retrieval_metrics(sk[i], kway=kway) for i in range(len(cfg.seeds))]
                        results[sel][key]["per_key"][k] = {"aggregate": aggregate(ps)}
                if cfg.eval.hungarian:
                    hung = {str(seed): hungarian_topk(sims[i]) for i, seed in enumerate(cfg.seeds)}
                    transductive[sel][key] = {"per_seed": hung, "aggregate": aggregate(list(hung.values()))}
                if picture_source is None and sel == "final":
                    picture_source = (s, sims[0], cfg.seeds[0])
                log(
                    f"{unit.name} {sel:<19} {key}: top-1 {results[sel][key]['aggregate']['top1']['mean']:.3f} "
                    f"top-5 {results[sel][key]['aggregate']['top5']['mean']:.3f} over {len(cfg.seeds)} seed(s), "
                    f"chance {1 / test.n_images:.3f} / {min(1.0, 5 / test.n_images):.3f}"
                )
    for table in (results, transductive):
        for subjects in table.values():
            if len(subjects) > 1:
                means = [{k: v["mean"] for k, v in r["aggregate"].items()} for r in subjects.values()]
                subjects["across_subjects"] = {"aggregate": aggregate(means)}
    n_test = {f"sub-{s:02d}": t.n_images for s, t in tests.items()}
    metrics = {
        "protocol": {
            **config_summary(cfg),
            "queries": "one per test image: the mean of all its repetitions",
            "gallery": "every test image of the subject (zero-shot: test concepts are not in training)",
            "similarity": "cosine; ties count against the model",
            "n_test_images": n_test,
            "kway": "top-1 among the true image and k-1 fixed distractors (distractors.json)",
            "selections": {
                "final": f"weights after the last epoch ({cfg.train.epochs})",
                "validation_selected": f"per seed, the epoch with the best validation {cfg.select_on} "
                f"on {cfg.data.val_fraction:.0%} of the training concepts (never the test set)",
            },
            "across_subjects": "mean and sd over subjects of each subject's mean over seeds",
        },
        "final": results["final"],
        "validation_selected": results["validation_selected"] or None,
        "transductive_hungarian": {
            "note": "TRANSDUCTIVE, not comparable with retrieval: uses that queries and images are one-to-one "
            "(scipy.optimize.linear_sum_assignment, top-k by k rounds)",
            **{sel: v for sel, v in transductive.items() if v},
        },
    }
    if label := rehearsal_label(run_dir):
        metrics = {"rehearsal": label, **metrics}
    write_json(run_dir / "metrics.json", metrics)
    (run_dir / "report.md").write_text(report_markdown(metrics))
    if picture_source is not None and cfg.data.dataset:
        s, sim, seed = picture_source
        top5_picture(sim, cfg, run_dir / "top5.png", title=f"sub-{s:02d}, seed {seed}, final epoch")
    write_manifest(
        run_dir / "evaluation",
        stage="evaluate",
        config={"run": str(run_dir)},
        inputs={"run_manifest": str(run_dir / "manifest.json")},
        outputs={"metrics": "../metrics.json", "report": "../report.md"},
    )
    return metrics


def _fmt(agg: dict[str, float], pct: bool = True) -> str:
    m, sd, n = agg["mean"], agg["sd"], agg["n"]
    if pct:
        return f"{100 * m:.2f} ± {100 * sd:.2f}" if n > 1 else f"{100 * m:.2f}"
    return f"{m:.3f} ± {sd:.3f}" if n > 1 else f"{m:.3f}"


def report_markdown(metrics: dict[str, Any]) -> str:
    p = metrics["protocol"]
    lines = [
        "# Retrieval results",
        "",
        *([f"**{metrics['rehearsal']}**", ""] if metrics.get("rehearsal") else []),
        f"EEG encoder `{p['eeg_encoder']}`, image encoder `{p['image_encoder']}`"
        + (f", EVNet encoder `{p['evnet_encoder']}`" if p["evnet_encoder"] else "")
        + f"; subjects {p['subjects']} ({p['mode']}); seeds {p['seeds']}; {p['epochs']} epochs, batch "
        f"{p['batch_size']}, lr {p['lr']}. Test images per subject: {p['n_test_images']}. "
        "Values in % (mean ± sd over seeds; across subjects: over subjects).",
        "",
    ]
    for sel in ("final", "validation_selected"):
        table = metrics.get(sel)
        if not table:
            continue
        lines += [f"## {sel.replace('_', '-')} ({p['selections'][sel]})", ""]
        kcols = sorted(
            {k for r in table.values() for k in r["aggregate"] if k.endswith("way_top1")},
            key=lambda k: int(k.split("way")[0]),
        )
        lines.append("| subject | top-1 | top-5 | MRR | " + " | ".join(k.replace("_top1", "") for k in kcols) + " |")
        lines.append("|---" * (4 + len(kcols)) + "|")
        for subj, r in table.items():
            a = r["aggregate"]
            cells = [_fmt(a["top1"]), _fmt(a["top5"]), _fmt(a["mrr"], pct=False)]
            cells += [_fmt(a[k]) if k in a else "" for k in kcols]
            lines.append(f"| {subj} | " + " | ".join(cells) + " |")
        lines.append("")
        nb = [k for k in NEURALBENCH_COLUMNS if all(k in r["aggregate"] for r in table.values())]
        if nb:
            lines += [
                "NeuralBench's metrics, for comparison across frameworks (its rank counts a tie half; retrieval AUC = "
                "mean inverse normalised rank over all test images, chance 50 %; in-batch top-k among the targets of "
                "64 consecutive test queries, chance 1/64):",
                "",
                "| subject | " + " | ".join(NEURALBENCH_COLUMNS[k] for k in nb) + " |",
                "|---" * (1 + len(nb)) + "|",
            ]
            for subj, r in table.items():
                lines.append(f"| {subj} | " + " | ".join(_fmt(r["aggregate"][k]) for k in nb) + " |")
            lines.append("")
        per_key = [(subj, r) for subj, r in table.items() if "per_key" in r]
        if per_key:
            lines += [
                f"Each key (the experts and their fusion; `{per_key[0][1]['key']}` is the row above):",
                "",
                "| subject | key | top-1 | top-5 |",
                "|---|---|---|---|",
            ]
            for subj, r in per_key:
                for k, rk in r["per_key"].items():
                    a = rk["aggregate"]
                    lines.append(f"| {subj} | {k} | {_fmt(a['top1'])} | {_fmt(a['top5'])} |")
            lines.append("")
    hung = {k: v for k, v in metrics["transductive_hungarian"].items() if k != "note"}
    if hung:
        lines += [
            "## TRANSDUCTIVE (not comparable): one-to-one assignment",
            "",
            metrics["transductive_hungarian"]["note"] + ".",
            "",
            "| weights | subject | top-1 | top-5 |",
            "|---|---|---|---|",
        ]
        for sel, table in hung.items():
            for subj, r in table.items():
                lines.append(f"| {sel} | {subj} | {_fmt(r['aggregate']['top1'])} | {_fmt(r['aggregate']['top5'])} |")
        lines.append("")
    return "\n".join(lines)


def top5_picture(sim: np.ndarray, cfg: RunConfig, path: Path, title: str = "") -> None:
    """Rows of: the image seen, then the 5 images ranked highest for its EEG (the seen one framed green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.things_eeg2 import ImageSet, load_image

    files = ImageSet.discover(cfg.data.dataset).files("test")
    if len(files) != sim.shape[1]:
        raise DataFormatError(f"{cfg.data.dataset}: {len(files)} test images, the scores rank {sim.shape[1]}")
    n = min(cfg.eval.picture_queries, sim.shape[0])
    queries = np.linspace(0, sim.shape[0] - 1, n).round().astype(int)
    fig, axes = plt.subplots(n, 6, figsize=(7.2, 1.25 * n), squeeze=False)
    for r, q in enumerate(queries):
        order = np.argsort(-sim[q], kind="stable")[:5]
        axes[r, 0].imshow(load_image(files[q]))
        axes[r, 0].set_title("seen" if r == 0 else "", fontsize=7)
        for c, j in enumerate(order, start=1):
            ax = axes[r, c]
            ax.imshow(load_image(files[j]))
            if j == q:
                for spine in ax.spines.values():
                    spine.set(edgecolor="limegreen", linewidth=3)
            if r == 0:
                ax.set_title(f"rank {c}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"EEG queries and their top-5 test images ({title}); green = the image seen", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
