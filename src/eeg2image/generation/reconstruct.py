"""``eeg2image reconstruct``: images of what was seen, from the test EEG of a trained experts run and its aligners,
with the controls every reconstruction table needs beside them.

For every unit of the run, every subject it is evaluated on and every seed, the test EEG (each image's repetitions
averaged, as a retrieval query) is decoded along the field's two paths:

- **semantic**: that seed's frozen experts -> that seed's aligner (``models.align``) -> one embedding per target;
- **low-level** (when the align folder has an EEG -> latent map, ``align --set low_level=vae:FOLDER``): ridge from
  the averaged EEG -> the stimulus' VAE latent;

and the generator draws the image from both:

- ``sdxl``: SDXL-Turbo with one IP-Adapter per aligner target (``generation.sdxl``; local weights only), img2img
  from the predicted latent when ``generate.init_strength`` > 0;
- ``decoder``: the offline conditional decoder (``models.decoder``, ``eeg2image train-decoder``), the demo's
  stand-in for SDXL-Turbo;
- ``nearest``: the training image nearest the predicted ``image`` embedding (``generation.gallery``), a labelled
  retrieval baseline.

**Rows** (``rows``), each written to ``OUT/<row>/sub-XX/seed-S/round-R/<stimulus>.png`` with its manifest, so that
``evaluate-recon`` and ``table`` score them side by side under the same protocol:

- ``eeg``: the EEG through both paths to the generator: the reconstruction;
- ``low-level``: the predicted latent through the VAE's decoder alone (the low-level image);
- ``shuffled``: the same, with the test EEG rows permuted (a seeded derangement) before anything reads them: a
  control that must sit at chance;
- ``nearest``: the training image nearest the aligned ``image`` embedding: the retrieval baseline;
- ``linear``: ridge from the averaged EEG straight to every target and to the latent (``align``'s EEG ridge
  maps), then the same generator: the linear baseline of both paths;
- ``ceiling``: the same generator fed each test image's own target embeddings and latent: what a perfect decoder
  of the EEG would reach. The one row that reads the test images' embeddings (from the store), never to select
  or tune anything.

Besides the images, each row keeps what it decoded, ``seed-S/predictions.safetensors`` (its embeddings and
latents), so that evaluation can score the embeddings themselves (identification of the test image). The test
images themselves are never read here (only their ids, which name the files).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..config import to_dict
from ..data.preprocess import read_our_preprocessed
from ..data.things_eeg2 import ImageSet, resolve_channels
from ..io import (
    DataFormatError,
    MissingDataError,
    check_option,
    file_sha256,
    folder_lock,
    json_sha256,
    save_safetensors,
    write_manifest,
)
from ..models.align import load_aligner
from ..models.decoder import floored_sd
from ..models.retrieval import embed_eeg, load_stack
from ..models.ridge import eeg_features
from ..runs import (
    aligner_path,
    eeg_ridge_path,
    experts_weights,
    read_align_config,
    read_run_config,
    subject_folder,
    units_of,
)
from .gallery import NearestTrainingImage
from .sdxl import (
    DTYPES,
    IP_ADAPTER_REPO,
    SDXL_TURBO,
    GenerationConfig,
    Reconstructor,
    load_sdxl_pipeline,
    sdxl_weights,
)

__all__ = [
    "GENERATORS",
    "ROWS",
    "ReconstructConfig",
    "calibrate_latents",
    "derangement",
    "eeg_queries",
    "reconstruct_run",
]

GENERATORS = ("sdxl", "decoder", "nearest")

#: The rows of a reconstruction table: name -> what it is (written into each row's manifest and reports).
ROWS: dict[str, str] = {
    "eeg": "the test EEG -> experts -> aligner (and EEG -> latent) -> the generator: the reconstruction",
    "low-level": "the test EEG -> ridge -> the VAE latent -> the VAE's decoder alone: the low-level image",
    "shuffled": "control: the test EEG rows permuted before decoding, then as `eeg` (must sit at chance)",
    "nearest": "baseline: the training image nearest the aligned image embedding (retrieval, not generation)",
    "linear": "baseline: ridge from the averaged test EEG to every target and to the latent -> the same generator",
    "ceiling": "control: the same generator fed each test image's own embeddings and latent (a perfect decoder)",
}
PREDICTIONS = "predictions.safetensors"


@dataclass
class ReconstructConfig:
    """How ``eeg2image reconstruct`` generates: the generator, the rows, their settings and where weights are."""

    generator: Literal["sdxl", "decoder", "nearest"] = "sdxl"
    rows: list[str] = field(default_factory=lambda: ["eeg"])
    generate: GenerationConfig = field(default_factory=GenerationConfig)
    sdxl: str = SDXL_TURBO  # a local folder or a Hugging Face cache id (never downloaded)
    ip_adapter: str = IP_ADAPTER_REPO
    # auto: float16 on CUDA (with the VAE's force_upcast), float32 elsewhere (diffusers refuses to promise float16
    # on the CPU, and this CPU has no float16 arithmetic); or float16, bfloat16, float32
    dtype: str = "auto"
    device: str = "auto"
    nearest_size: int = 512  # the nearest generator's image size
    decoder: str = ""  # the offline decoder's folder (`eeg2image train-decoder`), for generator=decoder
    temperature: float = 1.0  # the decoder's sampling temperature (0: its mean image)
    shuffle_seed: int = 0  # the permutation of the `shuffled` row
    # predicted latents rescaled image by image to the training latents' spread (``calibrate_latents``) before the
    # VAE decodes them (low-level row) or SDXL starts from them (img2img); the decoder is unaffected
    calibrate_latents: bool = True

    def __post_init__(self) -> None:
        check_option("generator", self.generator, GENERATORS, where="reconstruct.generator")
        check_option("dtype", self.dtype, ["auto", *DTYPES], where="reconstruct.dtype")
        if not self.rows:
            raise DataFormatError("reconstruct.rows is empty; expected some of " + ", ".join(ROWS))
        for r in self.rows:
            check_option("row", r, ROWS, where="reconstruct.rows")
        if len(set(self.rows)) != len(self.rows):
            raise DataFormatError(f"reconstruct.rows lists a row twice: {self.rows}")
        if self.generator == "decoder" and not self.decoder:
            raise DataFormatError("generator=decoder needs the decoder's folder: --set decoder=FOLDER")
        if self.temperature < 0:
            raise DataFormatError(f"reconstruct.temperature is {self.temperature}; expected >= 0")


def eeg_queries(run_cfg, subject: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(queries (N, C, T): each test image's repetitions averaged, subject ids (N,)) of one subject, the channels
    picked as the run picked them."""
    eeg = read_our_preprocessed(subject_folder(run_cfg, subject), "test")
    # averaged on the memory-mapped array: no copy of every repetition (1 GB for a real subject's test set)
    data = torch.from_numpy(np.asarray(eeg.data).mean(axis=1, dtype=np.float32))
    if run_cfg.data.channels is not None:
        names = resolve_channels(run_cfg.data.channels)
        missing = [c for c in names if c not in eeg.ch_names]
        if missing:
            raise DataFormatError(f"{eeg.path}: channels {missing} are not in the preprocessed test data")
        data = data[:, [eeg.ch_names.index(c) for c in names]]
    return data, torch.full((data.shape[0],), subject, dtype=torch.long)


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of ``range(n)`` that moves every element (n >= 2): the ``shuffled`` row's order."""
    if n < 2:
        raise DataFormatError(f"the shuffled control needs at least 2 test images, got {n}")
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=gen)
        if not (perm == torch.arange(n)).any():
            return perm


def _device(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


@dataclass
class _Unit:
    """Everything one unit's rows read, loaded and checked before anything is written."""

    unit: Any
    wfile: Path
    sha: str
    stack: Any
    seeds: list[int]
    aligners: dict[int, Any]
    aligner_sha: dict[str, str]
    ridge: Any = None  # the EEG ridge maps (linear control, low-level path)
    ridge_meta: dict = field(default_factory=dict)


def reconstruct_run(
    align_dir: str | Path,
    out: str | Path,
    cfg: ReconstructConfig,
    *,
    dataset: str | Path | None = None,
    pipeline_factory: Callable[[int], Any] | None = None,
    prompt_embeds: tuple[torch.Tensor, torch.Tensor] | None = None,
    progress: bool = True,
    log=print,
) -> list[Path]:
    """Generate every missing image of every row; returns the per-row, per-subject folders. ``pipeline_factory
    (n_adapters)`` replaces ``load_sdxl_pipeline`` (tests pass a tiny pipeline and its ``prompt_embeds``). Every
    input is loaded and checked before the first file is written: a refusal leaves nothing behind."""
    align_dir, out = Path(align_dir), Path(out)
    acfg = read_align_config(align_dir)
    run_dir = Path(acfg.run)
    run_cfg = read_run_config(run_dir)
    root = dataset or run_cfg.data.dataset
    if not root:
        raise MissingDataError("no dataset root: pass --dataset (the test images' ids name the output files)")
    stimuli = ImageSet.discover(root).stimulus_ids("test")
    encoder = acfg.encoder or run_cfg.data.image_encoder
    targets = list(acfg.align.targets)
    target_views = {t: f"{acfg.target_views[t]}@{encoder}" for t in targets}
    rows = list(cfg.rows)
    needs_ridge = bool(acfg.low_level) or "linear" in rows or "low-level" in rows
    if "low-level" in rows and not acfg.low_level:
        raise DataFormatError(
            f"{align_dir}: row low-level needs an EEG -> latent map; align with --set low_level=vae:FOLDER"
        )
    units = [_load_unit(align_dir, acfg, run_cfg, u, needs_ridge, cfg.device) for u in units_of(run_cfg)]
    gen = _Generators(cfg, acfg, run_cfg, root, targets, target_views, pipeline_factory, prompt_embeds, rows)
    gen.check_latents(units, align_dir)
    folders = []
    with folder_lock(out, "reconstruct"):
        for u in units:
            for subject in u.unit.eval_subjects:
                q, sub = eeg_queries(run_cfg, subject)
                if len(q) != len(stimuli):
                    raise DataFormatError(
                        f"{subject_folder(run_cfg, subject)}: {len(q)} test EEG rows, but {root} holds "
                        f"{len(stimuli)} test images"
                    )
                if not u.unit.subject_aware:
                    sub = torch.zeros_like(sub)
                inputs = _RowInputs(u, q, sub, cfg, acfg, run_cfg, targets, target_views, rows)
                for row in rows:
                    folder = out / row / f"sub-{subject:02d}"
                    label = gen.label(row)
                    claim = {
                        "row": row,
                        "experts": str(u.wfile),
                        "experts_sha256": u.sha,
                        "aligners_sha256": u.aligner_sha,
                        "settings_sha256": json_sha256(
                            {k: v for k, v in to_dict(cfg).items() if k not in ("device", "rows")}
                        ),
                    }
                    _claim(folder, claim)
                    write_manifest(
                        folder,
                        stage="reconstruct",
                        config={"reconstruct": to_dict(cfg), "align": to_dict(acfg)},
                        inputs=claim,
                        outputs={
                            "images": "seed-<S>/round-<R>/<stimulus>.png",
                            "predictions": f"seed-<S>/{PREDICTIONS}",
                        },
                        extra={
                            "generator": label,
                            "weights": gen.weights(row),
                            "row": row,
                            "row_text": ROWS[row],
                            "subject": subject,
                            "seeds": u.seeds,
                            "unit": u.unit.name,
                            "store": run_cfg.data.store,
                            "target_views": target_views,
                            "dataset": str(root),
                        },
                    )
                    for i, seed in enumerate(u.seeds):
                        embeds, latents = inputs.of(row, i, seed)
                        _save_predictions(folder / f"seed-{seed}" / PREDICTIONS, embeds, latents, row, seed)
                        log(f"{u.unit.name}, subject {subject}, seed {seed}: {len(stimuli)} stimuli -> {folder}")
                        gen.generate(row, folder, embeds, latents, stimuli, seed, progress)
                    folders.append(folder)
    return folders


def _load_unit(align_dir: Path, acfg, run_cfg, unit, needs_ridge: bool, device: str) -> _Unit:
    wfile = experts_weights(Path(acfg.run), unit, acfg.weights)
    stack, meta = load_stack(wfile, engine=run_cfg.engine, device=_device(device))
    sha = file_sha256(wfile)
    aligners, aligner_sha = {}, {}
    for seed in meta["seeds"]:
        path = aligner_path(align_dir, unit.name, seed)
        model, ameta = load_aligner(path)
        if ameta.get("method", "sth_align") != acfg.method:
            raise DataFormatError(
                f"{path}: an aligner of method {ameta.get('method')!r}, but {align_dir / 'config.yaml'} says "
                f"{acfg.method!r}; align again into a new folder"
            )
        if ameta.get("experts_sha256") != sha:
            raise DataFormatError(
                f"{path}: trained on other experts weights than {wfile} (retrained since?); run `eeg2image align` "
                "again into a new folder"
            )
        aligners[seed] = model
        aligner_sha[str(seed)] = file_sha256(path)
    u = _Unit(unit, wfile, sha, stack, list(meta["seeds"]), aligners, aligner_sha)
    if needs_ridge:
        u.ridge, u.ridge_meta = load_aligner(eeg_ridge_path(align_dir, unit.name))
        if acfg.low_level and "latent" not in u.ridge.maps:
            raise DataFormatError(
                f"{eeg_ridge_path(align_dir, unit.name)}: no EEG -> latent map, although the align config names "
                f"low_level={acfg.low_level!r}; align again into a new folder"
            )
    return u


class _RowInputs:
    """What each row feeds the generator, per seed: ({target: (N, D)}, latents (N, C*h*w) or None)."""

    def __init__(self, u: _Unit, q, sub, cfg, acfg, run_cfg, targets, target_views, rows):
        self.u, self.targets = u, targets
        self.eeg = embed_eeg(u.stack, q, sub)
        x = eeg_features(q, acfg.eeg_time_stride) if u.ridge is not None else None
        linear = u.ridge.predict({"eeg": x}) if u.ridge is not None else {}
        self.latents = linear.get("latent") if acfg.low_level else None
        if self.latents is not None and cfg.calibrate_latents:
            self.latents = calibrate_latents(self.latents, run_cfg.data.store, acfg)
        self.linear = {t: linear[t] for t in targets if t in linear}
        self.perm = derangement(len(q), cfg.shuffle_seed)
        self.shuffled = embed_eeg(u.stack, q[self.perm], sub[self.perm]) if "shuffled" in rows else None
        self.ceiling: tuple[dict, Any] | None = None
        if "ceiling" in rows:
            self.ceiling = _test_targets(run_cfg, acfg, target_views, len(q))

    def _aligned(self, eeg: dict, i: int, seed: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)  # a sampling aligner (the prior) draws from the run seed
        return self.u.aligners[seed].predict({k: v[i].cpu() for k, v in eeg.items()}, gen)

    def of(self, row: str, i: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        if row in ("eeg", "nearest"):
            return self._aligned(self.eeg, i, seed), self.latents
        if row == "shuffled":
            lat = None if self.latents is None else self.latents[self.perm]
            return self._aligned(self.shuffled, i, seed), lat
        if row == "linear":
            missing = [t for t in self.targets if t not in self.linear]
            if missing:
                raise DataFormatError(f"the EEG ridge maps have no {missing} map(s); align again into a new folder")
            return dict(self.linear), self.latents
        if row == "ceiling":
            return self.ceiling
        return {}, self.latents  # low-level


def calibrate_latents(latents: torch.Tensor, store: str, acfg) -> torch.Tensor:
    """Undo a regression's shrinkage of predicted latents, image by image: standardised with the training latents'
    per-element mean and sd, rescaled to unit RMS, then back (a ridge prediction pulls every latent toward the mean
    latent, which a VAE decodes grey). Uses the training partition only; the offline decoder does the same inside."""
    from ..features.vae import latent_table

    table, _ = latent_table(store, "training", acfg.low_level_view, acfg.low_level)
    z = torch.from_numpy(np.asarray(table.embeddings, dtype=np.float32))
    mean, sd = z.mean(0), floored_sd(z)
    u = (latents.float() - mean) / sd
    u = u / u.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
    return mean + sd * u


def _test_targets(run_cfg, acfg, target_views: dict[str, str], n: int) -> tuple[dict, torch.Tensor | None]:
    """The ``ceiling`` row's inputs: the test images' own target embeddings and latents, from the store."""
    from ..features.store import EmbeddingStore
    from ..features.vae import latent_table

    st = EmbeddingStore(run_cfg.data.store)
    embeds = {}
    for t, spec in target_views.items():
        view, _, enc = spec.partition("@")
        embeds[t] = torch.from_numpy(np.asarray(st.load("test", view, enc).embeddings, dtype=np.float32))
    latents = None
    if acfg.low_level:
        table, info = latent_table(run_cfg.data.store, "test", acfg.low_level_view, acfg.low_level)
        _, train_info = latent_table(run_cfg.data.store, "training", acfg.low_level_view, acfg.low_level)
        if info["encoder"] != train_info["encoder"]:
            raise DataFormatError(
                f"{run_cfg.data.store}: the test latents of {acfg.low_level!r} were made by another VAE or size than "
                "the training ones; embed both partitions again"
            )
        latents = torch.from_numpy(np.asarray(table.embeddings, dtype=np.float32))
    for name, v in [*embeds.items(), ("latent", latents)]:
        if v is not None and len(v) != n:
            raise DataFormatError(f"{run_cfg.data.store}: {len(v)} test {name} rows for {n} test images")
    return embeds, latents


def _save_predictions(path: Path, embeds: dict, latents, row: str, seed: int) -> None:
    tensors = {f"embeds/{t}": v.float().contiguous() for t, v in embeds.items()}
    if latents is not None:
        tensors["latents"] = latents.float().contiguous()
    save_safetensors(path, tensors, {"row": row, "seed": str(seed)})


class _Generators:
    """The generator of the rows (built once, on first use) and the row-specific ones (nearest, the VAE)."""

    def __init__(self, cfg, acfg, run_cfg, root, targets, target_views, pipeline_factory, prompt_embeds, rows):
        self.cfg, self.acfg, self.run_cfg, self.root = cfg, acfg, run_cfg, root
        self.targets, self.target_views = targets, target_views
        self.pipeline_factory, self.prompt_embeds = pipeline_factory, prompt_embeds
        self.rows = rows
        self._main = None
        self._nearest = None
        self._vae = None
        if cfg.generator == "decoder":
            from .decoder import DecoderGenerator

            self._main = DecoderGenerator(cfg.decoder, cfg.temperature)
            self._main.check_conditioning(
                acfg.encoder or run_cfg.data.image_encoder, target_views, f"{cfg.decoder} and the align folder"
            )

    def main(self):
        if self._main is None:
            if self.cfg.generator == "nearest":
                self._main = self.nearest()
            else:
                self._main = self._sdxl()
        return self._main

    def nearest(self) -> NearestTrainingImage:
        if self._nearest is None:
            encoder = self.acfg.encoder or self.run_cfg.data.image_encoder
            view = self.acfg.target_views["image"]
            self._nearest = NearestTrainingImage(
                self.root, self.run_cfg.data.store, view, encoder, size=self.cfg.nearest_size
            )
        return self._nearest

    def _sdxl(self) -> Reconstructor:
        n = len(self.targets)
        if self.pipeline_factory is not None:
            pipe = self.pipeline_factory(n)
        else:
            c = self.cfg
            pipe = load_sdxl_pipeline(c.sdxl, c.ip_adapter, n_adapters=n, dtype=self._dtype(), device=_device(c.device))
        gcfg = dataclasses.replace(self.cfg.generate, modalities=self.targets)
        pe = self.prompt_embeds or (None, None)
        return Reconstructor(pipe, gcfg, pe[0], pe[1])

    def _dtype(self) -> str:
        c = self.cfg
        return c.dtype if c.dtype != "auto" else ("float16" if _device(c.device).startswith("cuda") else "float32")

    def weights(self, row: str) -> dict | None:
        """The weights files that draw ``row`` with their fingerprints (the manifest's record), or None when no
        network draws it (nearest) or a test supplies the pipeline."""
        if row == "nearest" or (self.cfg.generator == "nearest" and row != "low-level"):
            return None
        if row == "low-level":
            from ..features.vae import vae_weights

            return vae_weights(self.acfg.low_level.split(":", 1)[1])
        if self.cfg.generator == "decoder":
            return self.main().weights()
        if self.pipeline_factory is not None:
            return None
        return sdxl_weights(self.cfg.sdxl, self.cfg.ip_adapter, dtype=self._dtype())

    def vae(self):
        if self._vae is None:
            from ..features.vae import build_vae_encoder

            self._vae = build_vae_encoder(
                self.acfg.low_level.split(":", 1)[1], weights=None, device=torch.device("cpu")
            )
        return self._vae

    def label(self, row: str) -> str:
        if row == "nearest" or (self.cfg.generator == "nearest" and row != "low-level"):
            encoder = self.acfg.encoder or self.run_cfg.data.image_encoder
            return (
                f"{row}: nearest training image (retrieval baseline, not a generative reconstruction); gallery: "
                f"training images by {encoder}"
            )
        if row == "low-level":
            return f"{row}: the predicted latent through the VAE's decoder ({self.acfg.low_level}), no generator"
        c = self.cfg
        if c.generator == "decoder":
            gen = self.main().label
        else:
            g = c.generate
            gen = (
                f"SDXL-Turbo + {len(self.targets)} IP-Adapter(s) ({', '.join(self.targets)}), {g.steps} steps, "
                f"guidance {g.guidance_scale}, {g.size} px"
                + (f", img2img from the predicted latent (init_strength {g.init_strength})" if g.init_strength else "")
            )
        return f"{row}: {gen}"

    def check_latents(self, units: list[_Unit], align_dir: Path) -> None:
        """The latents the EEG ridge predicts must be those the generator takes (same VAE, same size)."""
        c = self.cfg
        decoder_latents = c.generator == "decoder" and self.main().needs_latents
        sdxl_latents = (
            c.generator == "sdxl" and c.generate.init_strength > 0 and set(self.rows) - {"nearest", "low-level"}
        )
        if not self.acfg.low_level:
            if decoder_latents:
                raise DataFormatError(
                    f"the decoder {c.decoder} takes latents ({self.main().meta.get('latents')}); {align_dir} has no "
                    "EEG -> latent map (align with --set low_level=vae:FOLDER)"
                )
            if sdxl_latents:
                raise DataFormatError(
                    f"generate.init_strength is {c.generate.init_strength}, but {align_dir} has no EEG -> latent map "
                    "(align with --set low_level=vae:<the SDXL pipeline folder or id>;size=<generate.size>)"
                )
            return
        for u in units:
            where = eeg_ridge_path(align_dir, u.unit.name)
            table = u.ridge_meta.get("latent_table")
            if decoder_latents:
                trained = self.main().meta.get("latent_table")
                if table != trained:
                    raise DataFormatError(
                        f"{where}: predicts the latents {u.ridge_meta.get('latent_view')!r} (table {str(table)[:12]}), "
                        f"but the decoder {c.decoder} was trained on {self.main().meta.get('latents')!r} (table "
                        f"{str(trained)[:12]}): another VAE or size; train the decoder on these latents"
                    )
            if sdxl_latents:
                from ..features.vae import vae_config_sha256

                rec = self.main()
                have = vae_config_sha256(rec.pipe.vae)
                shape = tuple(u.ridge_meta.get("latent_shape") or ())
                vae = (u.ridge_meta.get("latent_encoder") or {}).get("vae") or {}
                if shape != rec.latent_shape or vae.get("config_sha256") != have:
                    raise DataFormatError(
                        f"{where}: predicts latents {shape} of the VAE {self.acfg.low_level!r}; SDXL's VAE at "
                        f"{c.generate.size} px takes {rec.latent_shape} (config {have[:12]}, "
                        f"the table's {str(vae.get('config_sha256'))[:12]}): latents of another VAE or size"
                    )

    def generate(self, row, folder: Path, embeds, latents, stimuli, seed: int, progress: bool) -> None:
        c = self.cfg
        if row == "low-level":
            return self._decode_latents(folder, latents, stimuli, seed)
        if row == "nearest" or c.generator == "nearest":
            self.nearest().generate_to(folder, embeds, stimuli, seed=seed)
            return
        gen = self.main()
        if c.generator == "decoder":
            gen.generate_to(folder, embeds, latents, stimuli, seed=seed, rounds=c.generate.rounds)
            return
        gen.config = dataclasses.replace(gen.config, seed=seed)  # the image seeds follow the run's seed
        gen.generate_to(folder, embeds, stimuli, progress=progress, latents=latents)

    def _decode_latents(self, folder: Path, latents, stimuli, seed: int) -> None:
        from PIL import Image

        from ..features.vae import decode_latents
        from ..io import atomic_path, fault_point

        todo = [i for i, s in enumerate(stimuli) if not (folder / f"seed-{seed}" / "round-0" / f"{s}.png").is_file()]
        if not todo:
            return
        enc = self.vae()
        images = decode_latents(enc.vae, latents[todo], enc.latent_shape)
        for i, img in zip(todo, images, strict=True):
            with atomic_path(folder / f"seed-{seed}" / "round-0" / f"{stimuli[i]}.png") as tmp:
                Image.fromarray(img).save(tmp, format="PNG")
            fault_point("generate-batch")


def _claim(folder: Path, inputs: dict[str, Any]) -> None:
    """Refuse a folder holding images made from other experts, aligners or settings (nothing is overwritten)."""
    from ..io import read_json

    man = folder / "manifest.json"
    if man.is_file() and any(folder.glob("seed-*/round-*/*.png")):
        old = read_json(man).get("inputs", {})
        changed = sorted(k for k in set(old) | set(inputs) if old.get(k) != inputs.get(k))
        if changed:
            raise DataFormatError(
                f"{folder} holds images made from other inputs (differ in {', '.join(changed)}); reconstruct into a "
                "new folder — nothing was overwritten"
            )
