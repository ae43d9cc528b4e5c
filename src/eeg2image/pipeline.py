"""Stages chained: train -> evaluate -> table (and, later, generate), for the demo, sweeps and the CLI.

``train_and_evaluate`` runs one run folder through training and evaluation; ``run_all`` runs several and merges
their results into one table. A sweep (``plan_sweep``) is a list of such jobs, one per (config, subject, seed
group), written as shell lines (``jobs.txt``: for a cluster array job, ``sed -n "${SLURM_ARRAY_TASK_ID}p"
jobs.txt | bash``, or GNU parallel), submitted as a SLURM array through submitit (``--submit slurm``:
``submit_sweep``), or executed here one after another (``eeg2image sweep --execute``);
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

__all__ = [
    "ClusterResources",
    "Job",
    "plan_sweep",
    "run_all",
    "run_job",
    "submit_sweep",
    "train_and_evaluate",
    "write_jobs",
]


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


def run_job(job: Job) -> str:
    """One sweep job: train and evaluate its run folder (what each task of a submitted array runs)."""
    train_and_evaluate(job.run_config(), job.run_dir, progress=False)
    return str(job.run_dir)


#: Where ``sweep --submit`` sends the jobs: ``slurm`` (a SLURM array through submitit) or ``local`` (submitit's
#: local executor: the same code path on this machine, one process per job; what the tests use).
SUBMIT_TO = ("slurm", "local")


@dataclass
class ClusterResources:
    """What each array task asks SLURM for (submitit's own parameter names; ignored by the local executor but
    the time limit)."""

    partition: str | None = None
    timeout_min: int = 240
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    array_parallelism: int = 64


def submit_sweep(out: Path, jobs: list[Job], to: str, resources: ClusterResources | None = None) -> list[Any]:
    """Submit every job of a sweep as one array through submitit (Meta's maintained job engine; no scheduler of our
    own); ``OUT/submitit/`` keeps each task's logs and results, ``OUT/submitted.json`` the job ids. Returns
    submitit's job handles (``.result()`` waits for one). ``eeg2image table OUT`` merges once they are done."""
    import json

    import submitit

    from .io import check_option, write_json

    check_option("--submit", to, SUBMIT_TO)
    r = resources or ClusterResources()
    folder = Path(out) / "submitit" / "%j"
    if to == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=r.timeout_min)
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = {
            "timeout_min": r.timeout_min,
            "gpus_per_node": r.gpus_per_node,
            "cpus_per_task": r.cpus_per_task,
            "mem_gb": r.mem_gb,
            "slurm_array_parallelism": r.array_parallelism,
        }
        executor.update_parameters(**params, **({"slurm_partition": r.partition} if r.partition else {}))
    submitted = executor.map_array(run_job, jobs)
    record = {
        "submitted_to": to,
        "resources": json.loads(json.dumps(r.__dict__)),
        "jobs": [{"job_id": s.job_id, "run_dir": str(j.run_dir)} for s, j in zip(submitted, jobs, strict=True)],
    }
    write_json(Path(out) / "submitted.json", record)
    return submitted
