"""``eeg2image sweep``: subjects x seeds x configs as independent jobs, one command line each.

Each job trains and evaluates one (config, subject, seed group) run folder. ``jobs.txt`` holds one shell
line per job, ready for a cluster array job (``sed -n "${SLURM_ARRAY_TASK_ID}p" jobs.txt | bash``),
GNU parallel, or ``--execute`` (one after another, here). ``eeg2image table`` merges the runs' metrics
(seeds split over jobs are pooled per config and subject).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError


@dataclass
class Job:
    run_dir: Path
    config: Path | None
    subject: int
    seeds: list[int]
    preset: str | None
    sets: list[str]

    def train_args(self) -> list[str]:
        args = ["train", str(self.run_dir), "--subjects", str(self.subject), "--seeds", ",".join(map(str, self.seeds))]
        if self.preset:
            args += ["--preset", self.preset]
        if self.config:
            args += ["--config", str(self.config)]
        for s in self.sets:
            args += ["--set", s]
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
    return jobs


def write_jobs(out: Path, jobs: list[Job]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "jobs.txt"
    path.write_text("".join(j.command() + "\n" for j in jobs))
    return path
