"""Training checkpoints: everything needed to continue a run exactly as if it had never stopped.

One file, ``state.safetensors``, renamed into place whole (so a kill leaves either the previous checkpoint or
this one, never half of each): the stacked weights (``model/``), each seed's best weights so far (``best/``),
the optimiser's moments (``opt/``), every seed's random generator (``gen/``) and UBP's per-pair state
(``uncertainty/``, per target), and in its metadata (key ``state``, JSON) the epoch those tensors belong to, the
history, the best epochs and scores, and the fingerprint of the configuration and inputs that made it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..io import DataFormatError, save_safetensors
from ..models.retrieval import SeedStack
from .uncertainty import UncertainBlurState

STATE = "state.safetensors"
_META_KEY = "state"


def _um_prefix(name: str) -> str:
    """``uncertainty/`` for a single UM target (the retrieval model), ``uncertainty/<view>/`` for one of several."""
    return f"uncertainty/{name}/" if name else "uncertainty/"


def has_checkpoint(folder: Path | None) -> bool:
    return folder is not None and (folder / STATE).is_file()


def read_meta(folder: Path) -> dict[str, Any]:
    """The checkpoint's epoch, history, best epochs and fingerprint (its metadata)."""
    import json

    from safetensors import SafetensorError, safe_open

    path = folder / STATE
    try:
        with safe_open(str(path), "pt") as f:
            meta = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError) as exc:
        raise DataFormatError(f"{path}: unreadable checkpoint ({exc}); delete {folder} to start again") from exc
    if meta is None:
        raise DataFormatError(
            f"{path}: metadata key {_META_KEY!r} missing (a checkpoint of an older version); delete {folder} "
            "to train from the start"
        )
    return json.loads(meta)


def save_state(
    folder: Path,
    stack: SeedStack,
    opt: torch.optim.Optimizer,
    gens: list[torch.Generator],
    best: dict[str, torch.Tensor] | None,
    meta: dict[str, Any],
    blur_states: dict[str, UncertainBlurState] | None = None,
) -> None:
    import json

    tensors = {f"model/{n}": t.detach().cpu().contiguous() for n, t in stack.state_tensors().items()}
    if best is not None:
        tensors.update({f"best/{n}": t.cpu().contiguous() for n, t in best.items()})
    names = {id(p): n for n, p in stack.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                tensors[f"opt/{names[id(p)]}/{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    for i, g in enumerate(gens):
        tensors[f"gen/{i}"] = g.get_state()
    for name, st in (blur_states or {}).items():
        tensors.update({f"{_um_prefix(name)}{k}": v.cpu().contiguous() for k, v in st.tensors().items()})
    save_safetensors(folder / STATE, tensors, {_META_KEY: json.dumps(meta)})


def load_state(
    folder: Path,
    stack: SeedStack,
    opt: torch.optim.Optimizer,
    gens: list[torch.Generator],
    blur_states: dict[str, UncertainBlurState] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore ``stack``, ``opt``, ``gens`` and ``blur_states`` in place; returns (best weights, metadata)."""
    from safetensors.torch import load_file

    meta = read_meta(folder)
    tensors = load_file(str(folder / STATE))
    stack.load_state_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, str(folder / STATE))
    opt_state = {}
    fused = bool(opt.defaults.get("fused"))
    for n, p in stack.named_parameters():
        st = {k.rsplit("/", 1)[1]: v.to(p.device) for k, v in tensors.items() if k.startswith(f"opt/{n}/")}
        if st:
            st["step"] = st["step"] if fused else st["step"].cpu()  # fused AdamW keeps its step with the weights
            opt_state[p] = st
    opt.state.clear()
    opt.state.update(opt_state)
    for i, g in enumerate(gens):
        g.set_state(tensors[f"gen/{i}"])
    for name, st in (blur_states or {}).items():
        prefix = _um_prefix(name)
        st.load({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, str(folder / STATE))
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
    return best, meta
