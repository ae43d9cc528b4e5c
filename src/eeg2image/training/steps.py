"""The step loop of the image models trained offline (the VAE, the offline decoder), with exact resume.

A fixed number of optimiser steps, each on a batch drawn from one seeded ``torch.Generator``; every
``checkpoint_every`` steps (and at the end) ``OUT/checkpoint/state.safetensors`` holds the weights, the optimiser's
moments and current learning rate, the schedule, the generator and the history, renamed into place whole. A
killed run resumes from it to the same weights as an uninterrupted run; a checkpoint made under another ``key``
(configuration and inputs) is refused, nothing overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from ..io import DataFormatError, fault_point, save_safetensors

__all__ = ["STATE", "run_steps"]

STATE = "checkpoint/state.safetensors"


def _save(out: Path, model, opt, sched, gen, step: int, history: list, key: str, name: str) -> None:
    tensors = {f"model/{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                tensors[f"opt/{names[id(p)]}/{k}"] = torch.as_tensor(v).detach().contiguous()
    tensors["gen"] = gen.get_state()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]  # the schedule's current lr
    meta = {"step": step, "history": history, "key": key, "sched": sched.state_dict(), "groups": groups}
    save_safetensors(out / STATE, tensors, {"state": json.dumps(meta)})
    fault_point("after-write", f"{name}-state")


def _load(out: Path, model, opt, sched, gen, key: str, what: str) -> tuple[int, list]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = out / STATE
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["state"])
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise DataFormatError(f"{path}: unreadable checkpoint ({exc}); delete {path.parent} to start again") from exc
    if meta.get("key") != key:
        raise DataFormatError(
            f"{path}: a checkpoint of another {what} configuration or inputs; train into a new folder — nothing was "
            "overwritten"
        )
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    opt.state.clear()
    for n, p in model.named_parameters():
        st = {k.rsplit("/", 1)[1]: v for k, v in tensors.items() if k.startswith(f"opt/{n}/")}
        if st:
            opt.state[p] = st
    for group, saved in zip(opt.param_groups, meta["groups"], strict=True):
        group.update({k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    sched.load_state_dict(meta["sched"])
    gen.set_state(tensors["gen"])
    return int(meta["step"]), list(meta["history"])


def run_steps(
    out: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched,
    gen: torch.Generator,
    *,
    key: str,
    steps: int,
    checkpoint_every: int,
    step_loss: Callable[[torch.Generator], torch.Tensor],
    name: str,
    what: str,
    progress: bool = True,
    log=print,
) -> list[dict]:
    """``steps`` optimiser steps of ``step_loss(gen)`` (it draws its batch from ``gen``), resumed from ``out``'s
    checkpoint when there is one; returns the history (mean loss per ``checkpoint_every`` steps). ``name`` names
    the fault points (``<name>-step``, ``after-write@<name>-state``) and the progress bar."""
    from tqdm.auto import tqdm

    from ..allocator import keep_freed_memory

    keep_freed_memory()  # glibc: every step's large temporaries reuse freed pages instead of fresh ones
    step, history = 0, []
    if (out / STATE).is_file():
        step, history = _load(out, model, opt, sched, gen, key, what)
        log(f"{out}: resuming at step {step} of {steps}")
    model.train()
    bar = tqdm(total=steps, initial=step, desc=name, unit="step", disable=not progress)
    total = 0.0
    while step < steps:
        loss = step_loss(gen)
        if not torch.isfinite(loss):
            raise DataFormatError(f"{name} step {step + 1}: the loss became NaN/Inf; lower {name}.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        total += float(loss.detach())
        bar.update(1)
        fault_point(f"{name}-step")
        if step % checkpoint_every == 0 or step == steps:
            history.append({"step": step, "loss": total / (step % checkpoint_every or checkpoint_every)})
            total = 0.0
            _save(out, model, opt, sched, gen, step, history, key, name)
    bar.close()
    return history
