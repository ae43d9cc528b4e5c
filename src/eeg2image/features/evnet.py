"""EVNet front end: a fixed retina/LGN block and a V1 Gabor block (no learned weights).

Piper, Oliveira & Marques (2025), *EVNets: early vision networks* (repository lucaspiper99/evnet), which
extends VOneNet (Dapello et al. 2020, NeurIPS; dicarlolab/vonenet). Written from the paper's description
and the parameter tables of the reference code; no code is copied.

Input: raw RGB in [0, 1], (B, 3, H, W), H = W = ``image_size`` pixels spanning ``visual_degrees`` (224 px =
7 deg: 32 px/deg). Not CLIP-normalised pixels: light adaptation divides by the mean luminance.

**Subcortical block** (per image): light adaptation ``(x - mu) / (mu + 1e-5)`` with ``mu`` the mean over
channels and pixels; difference-of-Gaussians receptive fields, centre sigma ``rc / sqrt 2``, surround sigma
``rs / sqrt 2`` (peak-1 Gaussians), centre and surround read colour channels by the opponency table, the
whole filter divided by the absolute value of its sum, reflect padding; divisive contrast normalisation
``x / (sqrt(G * x^2) + c50)^n`` with a normalised Gaussian of sigma ``radius / sqrt 2``; gain ``k_exc``;
optional neuronal noise ``x + N(0, 1) sqrt(fano (|x| + 1e-5))``. Kernel sizes keep 75% of each Gaussian's
energy. P cells: 3 colour-opponent channels (R+/G-, G+/R-, B+/Y-), M cells: 1 achromatic ON channel.

**V1 block**: a bank of Gabor filters (simple cells = ReLU of the phase-0 filter; complex cells = energy of
the quadrature pair / sqrt 2), parameters sampled from macaque V1 statistics (orientation: De Valois et al.
1982a; spatial frequency of foveal simple and complex cells: De Valois et al. 1982b; envelope sizes nx, ny:
Ringach 2002, with a 0.75 Gaussian-copula correlation between size and frequency), each filter reading
one LGN channel; stride 4, kernel 31, gain ``k_exc``, optional neuronal noise
``x + N(0, 1) sqrt(fano relu(x) + 1e-5)``.

| parameter | P cells | M cells | source |
|---|---|---|---|
| centre radius ``rc`` (px) | 1.4948 | 2.4204 | EVNet ``tuning/{p,m}_cell_hyperparams.csv``, row of least ``l2_error`` |
| surround radius ``rs`` (px) | 7.1528 | 17.0919 | same (fits to primate LGN size / SF / contrast tuning) |
| surround weight ``ratio_dog`` | -0.011895 | -0.003751 | same |
| contrast-normalisation radius (px) | 13.4115 | 28.8722 | same |
| ``c50`` | 1.0 | 0.18502 | same |
| exponent ``n`` | 1.0 | 0.80687 | same |
| gain ``k_exc`` | 5.2953 | 2.8495 | same |
| DoG / CN kernel (px, 75% energy) | 19 / 33 | 43 / 69 | computed |
| V1: simple / complex cells | 256 / 256 | | EVNet ``vone_kwargs.yml`` (resnet-50) |
| V1: kernel, stride, sf_max | 31, 4, 8 cyc/deg | | same |
| V1 gain, fano factor ("standard") | 5.3, 0.93 | | EVNet ``subcort_kwargs.yml`` |
| subcortical fano factor | 0.4 | | EVNet default |
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5

P_CELL = {
    "rc": 1.494800846305186,
    "rs": 7.1528,
    "ratio": -0.011894632845946745,
    "radius_cn": 13.4115,
    "c50": 1.0,
    "n": 1.0,
    "k_exc": 5.29525198895458,
}
M_CELL = {
    "rc": 2.4203904,
    "rs": 17.091879253424104,
    "ratio": -0.0037506100912582663,
    "radius_cn": 28.872192,
    "c50": 0.18501829502844522,
    "n": 0.8068704487883759,
    "k_exc": 2.8494928592250206,
}
OPPONENCY = {  # (centre weights, surround weights) over R, G, B
    "r/g": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "g/r": ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0)),
    "b/y": ((0.0, 0.0, 1.0), (0.5, 0.5, 0.0)),
    "w/b": ((1 / 3, 1 / 3, 1 / 3), (1 / 3, 1 / 3, 1 / 3)),
}

# Macaque V1 statistics used to sample the Gabor bank.
ORI_BINS = np.array([-22.5, 22.5, 67.5, 112.5, 157.5])  # De Valois et al. 1982a
ORI_COUNTS = np.array([66, 49, 77, 54])
N_BINS = np.logspace(-1, 0.0, 5)  # Ringach 2002 (nx, ny)
N_JOINT = np.array([[2.0, 0.0, 1.0, 0.0], [8.0, 9.0, 4.0, 1.0], [1.0, 2.0, 19.0, 17.0], [0.0, 0.0, 1.0, 7.0]])
SF_BINS = np.array([0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8, 11.2])  # cyc/deg, De Valois et al. 1982b
SF_SIMPLE = np.array([4, 4, 8, 25, 33, 26, 28, 12, 8])  # foveal simple cells
SF_COMPLEX = np.array([0, 0, 9, 9, 7, 10, 23, 12, 14])  # foveal complex cells


@dataclass(frozen=True)
class EVNetConfig:
    image_size: int = 224
    visual_degrees: float = 7.0
    p_cells: bool = True
    m_cells: bool = True
    light_adaptation: bool = True
    contrast_normalization: bool = True
    subcortical_noise: bool = False
    subcortical_fano: float = 0.4
    simple_channels: int = 256
    complex_channels: int = 256
    ksize: int = 31
    stride: int = 4
    sf_max: float = 8.0
    sf_min: float = 0.0
    sf_corr: float = 0.75
    gabor_seed: int = 0
    color_prob: tuple[float, ...] | None = (0.25, 0.25, 0.25, 0.25)
    v1_k_exc: float = 5.3
    v1_noise: bool = False
    v1_fano: float = 0.93
    energy: float = 0.75

    @property
    def ppd(self) -> float:
        return self.image_size / self.visual_degrees

    @property
    def lgn_channels(self) -> int:
        return 3 * self.p_cells + 1 * self.m_cells


EVNET_PRESETS = {
    # EVNet "standard" (P + M cells, both noise sources on): stochastic, as in the paper
    "standard": EVNetConfig(subcortical_noise=True, v1_noise=True),
    # the same without noise: deterministic features (our default for cached embeddings)
    "standard-no-noise": EVNetConfig(),
    # how the reference system (multi-level blur + EVNet) used it: P cells only, no noise, V1 gain 25
    "reference": EVNetConfig(m_cells=False, color_prob=None, v1_k_exc=25.0),
}


def kernel_size(radius: float, energy: float) -> int:
    """Odd kernel size keeping ``energy`` of a 2-D Gaussian of sigma ``radius / sqrt 2``."""
    sigma = radius / math.sqrt(2)
    return int(2 * math.ceil(math.sqrt(-2 * math.log(1 - energy)) * sigma) + 1)


def gaussian_2d(sigma: float, size: int) -> torch.Tensor:
    w = size // 2
    g = torch.arange(-w, w + 1, dtype=torch.float64)
    x, y = torch.meshgrid(g, g, indexing="ij")
    return torch.exp(-(x**2 + y**2) / (2 * sigma**2))


def gabor(frequency: float, sigma_x: float, sigma_y: float, theta: float, phase: float, size: int) -> torch.Tensor:
    """Gabor with carrier along ``x cos(theta) + y sin(theta)`` (x = row index), unit-area envelope."""
    w = size // 2
    g = torch.arange(-w, w + 1, dtype=torch.float64)
    x, y = torch.meshgrid(g, g, indexing="ij")
    rx = x * math.cos(theta) + y * math.sin(theta)
    ry = -x * math.sin(theta) + y * math.cos(theta)
    env = torch.exp(-0.5 * (rx**2 / sigma_x**2 + ry**2 / sigma_y**2)) / (2 * math.pi * sigma_x * sigma_y)
    return env * torch.cos(2 * math.pi * frequency * rx + phase)


def sample_gabor_parameters(cfg: EVNetConfig) -> dict[str, np.ndarray]:
    """Sample the V1 bank: spatial frequency (cyc/deg), orientation and phase (deg), nx, ny, input channel.

    Draws follow the reference code's order from one legacy numpy stream seeded with ``gabor_seed``, so
    the same seed gives the same bank as EVNet/VOneNet.
    """
    rs = np.random.RandomState(cfg.gabor_seed)
    n_s, n_c = cfg.simple_channels, cfg.complex_channels
    n = n_s + n_c

    def from_hist(hist, bins, u):
        return np.interp(u, np.hstack(([0], np.cumsum(hist))), bins)

    phase = from_hist(np.array([1.0]), np.array([0.0, 360.0]), rs.rand(n))
    ori = from_hist(ORI_COUNTS / ORI_COUNTS.sum(), ORI_BINS, rs.rand(n))
    joint = N_JOINT / N_JOINT.sum()
    nx_hist = joint.sum(axis=1) / joint.sum()
    ny_given_nx = joint / joint.sum(axis=1, keepdims=True)
    hi = np.where(SF_BINS <= cfg.sf_max)[0][-1]
    lo = np.where(SF_BINS >= cfg.sf_min)[0][0]
    bins = SF_BINS[lo : hi + 1]
    cov = np.array([[1.0, cfg.sf_corr], [cfg.sf_corr, 1.0]])
    from scipy.stats import norm

    parts = []
    for count, hist in ((n_s, SF_SIMPLE), (n_c, SF_COMPLEX)):
        if count == 0:
            parts.append((np.array([]), np.array([]), np.array([])))
            continue
        hist = hist[lo:hi] / hist[lo:hi].sum()
        u = norm.cdf(rs.multivariate_normal([0, 0], cov, count))
        nx = 10 ** from_hist(nx_hist, np.log10(N_BINS), u[:, 0])
        v = rs.rand(count)
        ny = np.empty(count)
        for i, nxi in enumerate(nx):
            b = np.argwhere(N_BINS < nxi)[-1][0]
            ny[i] = from_hist(ny_given_nx[b], np.log10(N_BINS), v[i])
        sf = 2 ** from_hist(hist, np.log2(bins), u[:, 1])
        parts.append((nx, 10**ny, sf))
    nx, ny, sf = (np.concatenate([p[k] for p in parts]) for k in range(3))
    n_in = cfg.lgn_channels
    if cfg.color_prob is not None and n_in > 1:
        if len(cfg.color_prob) != n_in:
            raise ValueError(f"color_prob needs {n_in} entries (one per LGN channel), got {len(cfg.color_prob)}")
        counts = [round(p * n) for p in cfg.color_prob]
        counts[-1] += n - sum(counts)
        color = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
        rs.shuffle(color)
    else:
        color = rs.randint(low=0, high=n_in, size=n, dtype=np.int8)
    return {"sf": sf, "theta": ori, "phase": phase, "nx": nx, "ny": ny, "color": color.astype(np.int64)}


def gaussian_1d(sigma: float, size: int) -> torch.Tensor:
    w = size // 2
    g = torch.arange(-w, w + 1, dtype=torch.float64)
    return torch.exp(-(g**2) / (2 * sigma**2))


def separable_blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Per-channel 2-D convolution with ``outer(g, g)`` and reflect padding, as two 1-D passes."""
    c, k = x.shape[1], g.numel()
    p = k // 2
    wx = g.view(1, 1, 1, k).expand(c, 1, 1, k).to(x.dtype)
    wy = g.view(1, 1, k, 1).expand(c, 1, k, 1).to(x.dtype)
    x = F.conv2d(F.pad(x, (p, p, 0, 0), mode="reflect"), wx, groups=c)
    return F.conv2d(F.pad(x, (0, 0, p, p), mode="reflect"), wy, groups=c)


class SubcorticalBlock(nn.Module):
    """Retina/LGN: light adaptation, DoG (P and/or M cells), contrast normalisation, gain, noise.

    The Gaussians are separable, so each DoG channel is computed as the centre Gaussian of its centre
    colour mix plus the weighted surround Gaussian of its surround colour mix (two 1-D passes each), the
    same numbers as the dense 2-D filters (``dog_filters``) at a fraction of the cost.
    """

    def __init__(self, cfg: EVNetConfig):
        super().__init__()
        self.cfg = cfg
        res = cfg.ppd / (224 / 7)
        groups: list[tuple[dict, list[str]]] = []
        if cfg.p_cells:
            groups.append((P_CELL, ["r/g", "g/r", "b/y"]))
        if cfg.m_cells:
            groups.append((M_CELL, ["w/b"]))
        if not groups:
            raise ValueError("EVNet needs P cells, M cells or both")
        self.groups = groups
        for gi, (cell, colours) in enumerate(groups):
            k_dog = kernel_size(cell["rs"] * res, cfg.energy)
            gc = gaussian_1d(cell["rc"] * res / math.sqrt(2), k_dog)
            gs = gaussian_1d(cell["rs"] * res / math.sqrt(2), k_dog)
            cmix = torch.tensor([OPPONENCY[c][0] for c in colours], dtype=torch.float64)
            smix = torch.tensor([OPPONENCY[c][1] for c in colours], dtype=torch.float64) * cell["ratio"]
            # |sum| of each dense filter: sum_ch (cw * sum(Gc) + ratio * sw * sum(Gs))
            norm = (cmix.sum(1) * gc.sum() ** 2 + smix.sum(1) * gs.sum() ** 2).abs()
            self.register_buffer(f"gc{gi}", gc.float())
            self.register_buffer(f"gs{gi}", gs.float())
            self.register_buffer(f"cmix{gi}", (cmix / norm[:, None]).float())
            self.register_buffer(f"smix{gi}", (smix / norm[:, None]).float())
            k_cn = kernel_size(cell["radius_cn"] * res, cfg.energy)
            g = gaussian_1d(cell["radius_cn"] * res / math.sqrt(2), k_cn)
            self.register_buffer(f"cn{gi}", (g / g.sum()).float())
        per_channel = [c for c, cols in groups for _ in cols]
        self.register_buffer("c50", torch.tensor([c["c50"] for c in per_channel]).view(1, -1, 1, 1))
        self.register_buffer("n_exp", torch.tensor([c["n"] for c in per_channel]).view(1, -1, 1, 1))
        self.register_buffer("k_exc", torch.tensor([c["k_exc"] for c in per_channel]).view(1, -1, 1, 1))

    def dog_filters(self, gi: int) -> torch.Tensor:
        """The dense (n_out, 3, k, k) DoG filters of group ``gi`` (for inspection and tests)."""
        gc, gs = getattr(self, f"gc{gi}").double(), getattr(self, f"gs{gi}").double()
        cm, sm = getattr(self, f"cmix{gi}").double(), getattr(self, f"smix{gi}").double()
        return cm[:, :, None, None] * torch.outer(gc, gc) + sm[:, :, None, None] * torch.outer(gs, gs)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        cfg = self.cfg
        if cfg.light_adaptation:
            mu = x.mean(dim=(1, 2, 3), keepdim=True)
            x = (x - mu) / (mu + EPS)
        outs = []
        for gi in range(len(self.groups)):
            centre = torch.einsum("oc,bchw->bohw", getattr(self, f"cmix{gi}"), x)
            surround = torch.einsum("oc,bchw->bohw", getattr(self, f"smix{gi}"), x)
            outs.append(
                separable_blur(centre, getattr(self, f"gc{gi}")) + separable_blur(surround, getattr(self, f"gs{gi}"))
            )
        y = torch.cat(outs, dim=1)
        if cfg.contrast_normalization:
            energies, start = [], 0
            for gi, (_, cols) in enumerate(self.groups):
                part = y[:, start : start + len(cols)]
                energies.append(separable_blur(part**2, getattr(self, f"cn{gi}")))
                start += len(cols)
            y = y / (torch.cat(energies, dim=1).clamp_min(0) ** 0.5 + self.c50) ** self.n_exp
        y = y * self.k_exc
        if cfg.subcortical_noise:
            noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            y = y + noise * torch.sqrt(cfg.subcortical_fano * (y.abs() + EPS))
        return y


class V1Block(nn.Module):
    """VOneBlock: Gabor filter bank of simple and complex cells from primate V1 statistics."""

    def __init__(self, cfg: EVNetConfig, in_channels: int):
        super().__init__()
        self.cfg = cfg
        params = sample_gabor_parameters(cfg)
        self.params = params
        sf = params["sf"] / cfg.ppd  # cycles per pixel
        sigx, sigy = params["nx"] / sf, params["ny"] / sf
        theta, phase = np.deg2rad(params["theta"]), np.deg2rad(params["phase"])
        n = cfg.simple_channels + cfg.complex_channels
        q0 = torch.zeros(n, in_channels, cfg.ksize, cfg.ksize, dtype=torch.float64)
        q1 = torch.zeros_like(q0)
        for i in range(n):
            c = int(params["color"][i])
            q0[i, c] = gabor(sf[i], sigx[i], sigy[i], theta[i], phase[i], cfg.ksize)
            q1[i, c] = gabor(sf[i], sigx[i], sigy[i], theta[i], phase[i] + math.pi / 2, cfg.ksize)
        self.register_buffer("q0", q0.float())  # dense banks, kept for inspection and tests
        self.register_buffer("q1", q1.float())

        # Each filter reads one input channel: convolve per channel with just its filters (4x fewer
        # operations than a dense conv), and skip the quadrature filter of simple cells (unused).
        color = torch.as_tensor(params["color"])
        ns = cfg.simple_channels
        self.groups = []
        for c in range(in_channels):
            rows = torch.nonzero(color == c).flatten()
            cplx = rows[rows >= ns]
            w = torch.cat([q0[rows, c : c + 1], q1[cplx, c : c + 1]]).float()
            # Gabor tails below float32's smallest normal number are stored as denormals, which made these
            # convolutions ~8x slower on CPU; as zeros they give the same outputs (tested)
            w = torch.where(w.abs() < torch.finfo(torch.float32).tiny, torch.zeros_like(w), w)
            self.register_buffer(f"w{c}", w)
            self.groups.append((c, rows, cplx))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        cfg = self.cfg
        pad = cfg.ksize // 2
        n, ns = cfg.simple_channels + cfg.complex_channels, cfg.simple_channels
        h = (x.shape[-2] + 2 * pad - cfg.ksize) // cfg.stride + 1
        w_out = (x.shape[-1] + 2 * pad - cfg.ksize) // cfg.stride + 1
        s0 = x.new_zeros(x.shape[0], n, h, w_out)
        s1 = x.new_zeros(x.shape[0], n, h, w_out)
        for c, rows, cplx in self.groups:
            if len(rows) == 0:
                continue
            out = F.conv2d(x[:, c : c + 1], getattr(self, f"w{c}"), stride=cfg.stride, padding=pad)
            s0[:, rows.to(x.device)] = out[:, : len(rows)]
            s1[:, cplx.to(x.device)] = out[:, len(rows) :]
        simple = F.relu(s0[:, :ns])
        complex_ = torch.sqrt(s0[:, ns:] ** 2 + s1[:, ns:] ** 2) / math.sqrt(2)
        y = cfg.v1_k_exc * torch.cat([simple, complex_], dim=1)
        if cfg.v1_noise:
            noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            y = y + noise * torch.sqrt(cfg.v1_fano * F.relu(y) + EPS)
        return y


class EVNet(nn.Module):
    """Subcortical block -> V1 block. ``forward(x)`` returns V1 responses (B, 512, H/4, W/4)."""

    def __init__(self, cfg: EVNetConfig | None = None):
        super().__init__()
        self.cfg = cfg or EVNetConfig()
        self.subcortical = SubcorticalBlock(self.cfg)
        self.v1 = V1Block(self.cfg, self.cfg.lgn_channels)
        self.requires_grad_(False)

    def recipe(self) -> dict:
        return {"model": "evnet", **asdict(self.cfg)}

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.v1(self.subcortical(x, generator), generator)
