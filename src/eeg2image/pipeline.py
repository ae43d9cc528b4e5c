"""Stages chained: train -> evaluate -> table (and, later, generate), for the demo, sweeps and the CLI.

``train_and_evaluate`` runs one run folder through training and evaluation; ``run_all`` runs several and merges
their results into one table. A sweep (``plan_sweep``) is a list of such jobs, one per (config, subject, seed
group), written as shell lines (``jobs.txt``: for a cluster array job, ``sed -n "${SLURM_ARRAY_TASK_ID}p"
jobs.txt | bash``, or GNU parallel) or executed here one after another (``eeg2image sweep --execute``);
``eeg2image table`` merges the runs' metrics (seeds split over jobs are pooled per config and subject).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, parse_sets
from .evaluation.evaluate import evaluate_run
from .evaluation.table import write_table
from .runs import RunConfig, config_changes, run_config
from .training.run import train_run

__all__ = ["Job", "plan_sweep", "run_all", "train_and_evaluate", "write_jobs"]


def train_and_evaluate(
    cfg: RunConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    replace_stale: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (resuming, or keeping a finished run) and evaluate it; returns the metrics.
    ``replace_stale``: a folder holding a run of another configuration (or an older version) is deleted and
    trained again, where ``eeg2image train`` would refuse it (for folders the caller owns, as the demo's)."""
    run_dir = Path(run_dir)
    if replace_stale and config_changes(run_dir / "config.yaml", cfg):
        log(f"{run_dir}: made by another configuration or version; trained again")
        shutil.rmtree(run_dir)
    train_run(cfg, run_dir, progress=progress, log=log)
    return evaluate_run(run_dir, log=log)


def run_all(
    runs: dict[Path, RunConfig],
    table_root: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], Any] = print,
    replace_stale: bool = False,
    descriptions: dict[str, str] | None = None,
) -> Path:
    """Train and evaluate every run folder of ``runs``, then merge every ``metrics.json`` below ``table_root``
    into ``results.json`` and ``results.md`` (with ``descriptions`` of the rows); returns the markdown's path."""
    for run_dir, cfg in runs.items():
        train_and_evaluate(cfg, run_dir, progress=progress, log=log, replace_stale=replace_stale)
    return write_table(table_root, descriptions)[1]


@dataclass
class Job:
    run_dir: Path
    config: Path | None
    subject: int
    seeds: list[int]
    preset: str | None
    sets: list[str]  # ``key=value`` as given to ``--set``

    def run_config(self) -> RunConfig:
        over = {"data.subjects": [self.subject], "seeds": self.seeds, **parse_sets(self.sets)}
        return run_config(self.preset, self.config, **over)

    def train_args(self) -> list[str]:
        seeds = ",".join(map(str, self.seeds))
        args = ["train", str(self.run_dir), "--subjects", str(self.subject), "--seeds", seeds]
        if self.preset:
            args += ["--preset", self.preset]
        if self.config:
            args += ["--config", str(self.config)]
        for item in self.sets:
            args += ["--set", item]
        return [*args, "--quiet"]

    def command(self) -> str:
        train = "eeg2image " + " ".join(shlex.quote(a) for a in self.train_args())
        return f"{train} && eeg2image evaluate {shlex.quote(str(self.run_dir))}"


def plan_sweep(
    out: Path,
    configs: list[Path],
    subjects: list[int],
    seeds: list[int],
    seeds_per_job: int,
    preset: str | None = None,
    sets: list[str] | None = None,
) -> list[Job]:
    """One job per (config, subject, group of ``seeds_per_job`` seeds); each job's run folder is
    ``out/<config name>/sub-XX_seedsA-B``. Every job's config is built once here, so a bad key fails now."""
    if not subjects or not seeds:
        raise ConfigError("a sweep needs subjects and seeds")
    if seeds_per_job < 1:
        raise ConfigError("seeds_per_job must be >= 1")
    names = [c.stem for c in configs] or [preset or "default"]
    if len(set(names)) != len(names):
        raise ConfigError(f"config files need distinct names (they name the sweep's folders): {names}")
    jobs = []
    for name, cfg in zip(names, configs or [None], strict=True):
        for s in subjects:
            for i in range(0, len(seeds), seeds_per_job):
                group = seeds[i : i + seeds_per_job]
                tag = f"seeds{group[0]}-{group[-1]}" if len(group) > 1 else f"seed{group[0]}"
                jobs.append(Job(out / name / f"sub-{s:02d}_{tag}", cfg, s, group, preset, list(sets or [])))
    for job in jobs:
        job.run_config()
    return jobs


def write_jobs(out: Path, jobs: list[Job]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "jobs.txt"
    path.write_text("".join(j.command() + "\n" for j in jobs))
    return path
