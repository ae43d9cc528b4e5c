"""The layer table of docs/retrieval.md: which layer of an image encoder to align the EEG with, chosen on validation.

    python -m benchmarks.layer_table demo_output

Reads a finished ``make demo`` folder (the simulated dataset, its preprocessed sub-01, its embedding store), embeds
the pooled output of every stage of the offline EfficientNet-Lite0 (``effnet-lite0:layer=K``, K = 0..6; cached in the
store), then trains and evaluates, each with the demo's recipe (``configs/run/demo.yaml``: VED, 20 epochs, seeds 0-2,
10 % of the training concepts for validation), against:

- ``final``: the final embedding (1280-d pooled head), as the peers align;
- ``layers/layer-K``: one stage each; the stage reported is the one best on the *validation* concepts
  (``table --choose``'s rule: the training histories only), with its test numbers;
- ``projected/layer-K`` and ``projected/final``: the same through a learned linear projector into 256 dimensions
  (Shallow Alignment's recipe), the layer again chosen on validation;
- ``router``: SAMGA's subject-aware layer router over the 7 stages and the final embedding (a pre-projector per
  width, a Linear per layer into 256 dimensions, one softmax weight per layer, the global weights at test);
- the same with SAMGA's coarse-to-fine schedule (``router-c2f``: 8 of the 20 epochs MMD -> InfoNCE, then InfoNCE with
  the shared head frozen);
- the classical baselines beside them, on the same rows: ridge from the averaged EEG (``ridge-final``, and
  ``ridge-layers/layer-K`` with the stage chosen on validation as above) and Riemannian tangent space + ridge
  (``riemann-final``);
- ``shuffled``: the final-embedding run with the training EEG paired with shuffled images (a control at chance).

Prints the markdown table (mean ± sd over the 3 seeds, chance stated) and writes it to ``OUT/layer_table.md``. The
test images are read by ``evaluate`` only; every choice is made on validation concepts. Figures, not tests.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

STAGES = range(7)
FINAL = "effnet-lite0"


def stage(k: int) -> str:
    return f"effnet-lite0:layer={k}"


def plan_runs(workdir: Path, out: Path) -> dict[Path, object]:
    from eeg2image.demo import _data_paths
    from eeg2image.runs import run_config

    paths = _data_paths(workdir, workdir / "things-eeg2-simulated", workdir / "preprocessed")

    def cfg(**over):
        return run_config("demo", None, **paths, **over)

    layer_views = [f"original@{stage(k)}" for k in STAGES] + [f"original@{FINAL}"]
    router = {
        "data.image_encoder": FINAL,
        "train.target.layer_views": layer_views,
        "train.target.projector_dim": 256,
        "train.target.projector_hidden": 256,
    }
    plan = {out / "final": cfg(**{"data.image_encoder": FINAL})}
    plan.update({out / "layers" / f"layer-{k}": cfg(**{"data.image_encoder": stage(k)}) for k in STAGES})
    # Shallow Alignment's recipe: each layer (and the final embedding) through a linear projector into 256-d
    proj = {"train.target.projector_dim": 256}
    plan.update({out / "projected" / f"layer-{k}": cfg(**{"data.image_encoder": stage(k)}, **proj) for k in STAGES})
    plan[out / "projected" / "final"] = cfg(**{"data.image_encoder": FINAL}, **proj)
    plan[out / "router"] = cfg(**router)
    plan[out / "router-c2f"] = cfg(
        **router,
        **{
            "train.shared_head": True,
            "train.coarse_to_fine": {"coarse_epochs": 8, "fine_lr": 5e-4},
        },
    )
    plan[out / "ridge-final"] = cfg(**{"data.image_encoder": FINAL, "train.eeg_encoder": "ridge"})
    plan.update(
        {
            out / "ridge-layers" / f"layer-{k}": cfg(**{"data.image_encoder": stage(k), "train.eeg_encoder": "ridge"})
            for k in STAGES
        }
    )
    plan[out / "riemann-final"] = cfg(**{"data.image_encoder": FINAL, "train.eeg_encoder": "riemann"})
    plan[out / "shuffled"] = cfg(**{"data.image_encoder": FINAL, "data.shuffle_pairs": True})
    return plan


def _row(run: Path, selection: str = "validation_selected") -> dict:
    from eeg2image.io import read_json

    m = read_json(run / "metrics.json")
    sel = selection if selection in m else "final"
    a = m[sel]["sub-01"]["aggregate"]
    return {"top1": a["top1"], "top5": a["top5"], "selection": sel}


def _router_weights(run: Path) -> list[float]:
    """The learned global layer weights (softmax of the router's logits / temperature), mean over seeds."""
    import torch

    from eeg2image.models.retrieval import load_weights

    tensors, meta = load_weights(run / "units" / "sub-01" / "final.safetensors")
    temperature = float(meta["model_config"]["target"]["router_temperature"])
    w = torch.softmax(tensors["target.router.global_logits"] / temperature, dim=-1)
    return w.mean(dim=0).tolist()


def table(out: Path) -> str:
    from eeg2image.evaluation.table import validation_choice

    def pct(x: dict) -> str:
        return f"{100 * x['mean']:.1f} ± {100 * x['sd']:.1f}"

    def line(name: str, what: str, run: Path, val: float | None = None) -> str:
        r = _row(run)
        v = f"{100 * val:.1f}" if val is not None else ""
        return f"| {name} | {what} | {v} | {pct(r['top1'])} | {pct(r['top5'])} |"

    lines = [
        "| row | target | validation top-1 % (chooses) | test top-1 % | test top-5 % |",
        "|---|---|---|---|---|",
    ]
    layers = validation_choice(out / "layers")
    projected = validation_choice(out / "projected")
    ridge_layers = validation_choice(out / "ridge-layers")
    lines.append(line("VED, final layer", "effnet-lite0 (1280-d)", out / "final", _val(out / "final")))
    k = layers["chosen"]
    lines.append(
        line(
            f"VED, validation-chosen layer ({k})",
            f"effnet-lite0:{k.replace('-', '=')}",
            out / "layers" / k,
            layers["validation"][k],
        )
    )
    pk = projected["chosen"]
    lines.append(
        line(
            f"VED, validation-chosen layer + linear projector ({pk})",
            f"effnet-lite0{'' if pk == 'final' else ':' + pk.replace('-', '=')} -> Linear(256)",
            out / "projected" / pk,
            projected["validation"][pk],
        )
    )
    for name, what in (
        ("router", "VED, subject-aware router over the 7 stages + final"),
        ("router-c2f", "VED, the router + shared head + coarse-to-fine (SAMGA)"),
    ):
        w = ", ".join(f"{x:.2f}" for x in _router_weights(out / name))
        lines.append(line(what, f"layer weights [{w}]", out / name, _val(out / name)))
    rk = ridge_layers["chosen"]
    ridge_val = ridge_layers["validation"]
    lines.append(line("ridge, final layer", "effnet-lite0", out / "ridge-final", _val(out / "ridge-final")))
    lines.append(
        line(
            f"ridge, validation-chosen layer ({rk})",
            f"effnet-lite0:{rk.replace('-', '=')}",
            out / "ridge-layers" / rk,
            ridge_val[rk],
        )
    )
    lines.append(
        line(
            "Riemannian tangent space + ridge, final layer",
            "effnet-lite0",
            out / "riemann-final",
            _val(out / "riemann-final"),
        )
    )
    lines.append(
        line("shuffled control (training pairs shuffled)", "effnet-lite0", out / "shuffled", _val(out / "shuffled"))
    )
    every = ", ".join(f"{n} {100 * v:.1f}" for n, v in layers["validation"].items())
    ridge_every = ", ".join(f"{n} {100 * v:.1f}" for n, v in ridge_val.items())
    test_every = ", ".join(f"{n} {100 * _row(out / 'layers' / n)['top1']['mean']:.1f}" for n in layers["validation"])
    proj_every = ", ".join(f"{n} {100 * v:.1f}" for n, v in projected["validation"].items())
    lines += [
        "",
        "Chance: top-1 2 %, top-5 10 % (50 test images). Validation-selected weights (each seed's best epoch on the "
        "validation concepts), 3 seeds (mean ± sd).",
        f"VED validation top-1 % per stage: {every}.",
        f"VED test top-1 % per stage (shown, never used to choose): {test_every}.",
        f"Ridge validation top-1 % per stage: {ridge_every}.",
        f"VED + linear projector validation top-1 % per stage: {proj_every}.",
    ]
    return "\n".join(lines)


def _val(run: Path) -> float | None:
    from eeg2image.evaluation.table import validation_choice

    c = validation_choice(run)
    return next(iter(c["validation"].values())) if c else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path, help="a finished `make demo` folder")
    args = ap.parse_args()
    from eeg2image.features.embed import embed_images
    from eeg2image.features.encoders import build_image_encoder
    from eeg2image.features.views import parse_views
    from eeg2image.pipeline import train_and_evaluate

    work = args.workdir
    t0 = time.perf_counter()
    for k in STAGES:
        embed_images(
            work / "things-eeg2-simulated", work / "embeddings", parse_views("original"), build_image_encoder(stage(k))
        )
    out = work / "layer-table"
    for run_dir, cfg in plan_runs(work, out).items():  # a finished run is kept (rerunning adds only what is new)
        train_and_evaluate(cfg, run_dir, progress=False, log=lambda m: print("  " + m, flush=True))
    md = table(out)
    (out / "layer_table.md").write_text(md + "\n")
    print(md)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
