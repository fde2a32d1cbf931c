"""Procedural stand-ins for the kit's three datasets, written in the real Kaggle folder layouts.

Why this exists: the kit's real code path (folder scanning, decoding, training) has to run offline,
in tests and in the "smoke" profile, without the real downloads. The images are drawn with numpy and
saved with Pillow only. Every file gets its own generator seeded from (seed, dataset, class, image, ...),
so the same arguments give byte-identical files and no file depends on the order others were written in.

The class signal is real and learnable (EfficientNet-Lite0 at 64 px learns all three sets in the smoke
profile's 2 epochs) but not trivial: it lives in local structure while position, scale, contrast, stain
and noise are jittered and each image's mean intensity is reset to a class-independent level, so that
global brightness alone cannot separate the classes. Every class has its own visible structure: a class
marked only by the absence of a finding is what a few fine-tuning steps fail to learn (version 1 did
that and ended at chance).

Each stand-in carries SYNTHETIC.txt (written first: "this folder is generated") and .medtl_synthetic.json
(written last: generator version and arguments), so `standin.prepare_synthetic` can rewrite a stand-in
drawn by an older generator and never mistake a user's own data for one.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable

import numpy as np
from PIL import Image

SYNTHETIC_DATASETS: tuple[str, ...] = ("sarscov2_ct", "breakhis_400x", "brain_tumor_mri")

#: Bumped whenever the same arguments would draw other pixels, so stale stand-ins get rewritten.
GENERATOR_VERSION = 2
MARK_FILE = "SYNTHETIC.txt"  # "generated, not patient data"; the report looks for it
STAMP_FILE = ".medtl_synthetic.json"  # a dotfile: the dataset scanners skip it

# Fixed encoder settings: the output must not depend on Pillow defaults changing.
_PNG_COMPRESS_LEVEL = 6
_JPEG_QUALITY = 90

# Tags for the per-file seed words, so different roles never share a random stream.
_ROLE_IMAGE = 1
_ROLE_PATIENT = 2
_ROLE_PATIENT_IDS = 3

_BREAKHIS_SUBTYPES: dict[str, tuple[tuple[str, str], ...]] = {
    "benign": (
        ("adenosis", "A"),
        ("fibroadenoma", "F"),
        ("phyllodes_tumor", "PT"),
        ("tubular_adenoma", "TA"),
    ),
    "malignant": (
        ("ductal_carcinoma", "DC"),
        ("lobular_carcinoma", "LC"),
        ("mucinous_carcinoma", "MC"),
        ("papillary_carcinoma", "PC"),
    ),
}
_BREAKHIS_EXTRA_MAGS: tuple[int, ...] = (40, 100, 200)
_BREAKHIS_EXTRA_PER_MAG = 2

_LungPoint = Callable[[int, float, float], tuple[float, float]]  # (lung, radius, angle) -> (x, y)

_BRAIN_CLASSES: tuple[tuple[str, str], ...] = (
    ("glioma", "gl"),
    ("meningioma", "me"),
    ("notumor", "no"),
    ("pituitary", "pi"),
)


def write_synthetic(
    name: str,
    out: str | os.PathLike,
    n_per_class: int = 40,
    size: int = 64,
    seed: int = 0,
) -> pathlib.Path:
    """Writes the stand-in under `out` (created if needed) and returns `out` as a Path."""
    stamp = synthetic_stamp(name, n_per_class, size, seed)
    root = pathlib.Path(out)
    if root.exists():
        if not root.is_dir():
            raise FileExistsError(f"{root} exists and is not a folder; pick an empty folder for the synthetic data")
        if any(root.iterdir()):
            raise FileExistsError(
                f"{root} is not empty; pick an empty (or new) folder for the synthetic data, "
                "nothing is overwritten"
            )
    root.mkdir(parents=True, exist_ok=True)
    # The mark first: a write cut short still reads as a stand-in (rewritten, never taken for data).
    (root / MARK_FILE).write_text(
        "Procedural synthetic images made by medtl (medtl_lib.data.synthetic), not real patient data.\n"
        f"name: {name}\nseed: {stamp['seed']}\nn_per_class: {stamp['n_per_class']}\nsize: {stamp['size']}\n"
        f"generator version: {GENERATOR_VERSION}\n",
        encoding="utf-8",
    )
    ds = SYNTHETIC_DATASETS.index(name)
    writer = {0: _write_ct, 1: _write_breakhis, 2: _write_brain}[ds]
    writer(root, stamp["n_per_class"], stamp["size"], stamp["seed"], ds)
    # The stamp last: present only when every image of this version is on disk.
    (root / STAMP_FILE).write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return root


def synthetic_stamp(name: str, n_per_class: int = 40, size: int = 64, seed: int = 0) -> dict[str, Any]:
    """What a complete stand-in written now with these arguments records in its STAMP_FILE.

    Raises ValueError for arguments `write_synthetic` would refuse."""
    if name not in SYNTHETIC_DATASETS:
        raise ValueError(
            f"unknown synthetic dataset {name!r}; valid names are: {', '.join(SYNTHETIC_DATASETS)}"
        )
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 2:
        raise ValueError(f"n_per_class must be an integer >= 2 (got {n_per_class!r})")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels (got {size!r})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r})")
    return {"generator": "medtl_lib.data.synthetic", "version": GENERATOR_VERSION, "name": name,
            "n_per_class": int(n_per_class), "size": int(size), "seed": int(seed)}


def read_stamp(folder: str | os.PathLike) -> dict[str, Any] | None:
    """A folder's stamp, or None when it has none (older stand-in, cut-short write, not a stand-in)."""
    try:
        stamp = json.loads((pathlib.Path(folder) / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def standin_state(name: str, folder: str | os.PathLike, **settings: Any) -> str:
    """What a folder holds against a stand-in written now with ``settings``: 'current' (keep),
    'stale' (an older or cut-short stand-in: safe to rewrite), 'foreign' (files that are not a
    stand-in: never touch) or 'missing' (absent or empty: write)."""
    folder = pathlib.Path(folder)
    if not (folder.is_dir() and any(folder.iterdir())):
        return "missing"
    if read_stamp(folder) == synthetic_stamp(name, **settings):
        return "current"
    return "stale" if is_standin(folder) else "foreign"


def is_standin(folder: str | os.PathLike) -> bool:
    """Whether `folder` was written by this module (any version): safe to delete and rewrite."""
    folder = pathlib.Path(folder)
    return (folder / MARK_FILE).is_file() or (folder / STAMP_FILE).is_file()


# --------------------------------------------------------------------------------------------------
# shared drawing helpers


def _rng(seed: int, ds: int, role: int, a: int = 0, b: int = 0, c: int = 0) -> np.random.Generator:
    # Always six words: SeedSequence treats trailing zero words as absent, so keys of varying
    # length could collide.
    return np.random.default_rng([seed, ds, role, a, b, c])


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] (y grows downwards), so shapes scale with `size`."""
    c = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    xx, yy = np.meshgrid(c, c)
    return xx, yy


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def _ellipse(
    xx: np.ndarray,
    yy: np.ndarray,
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    angle: float = 0.0,
    edge: float = 0.02,
) -> np.ndarray:
    """Soft ellipse mask in [0, 1]; a soft edge avoids aliasing that would make files resolution-brittle."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    u = (c * dx + s * dy) / rx
    v = (-s * dx + c * dy) / ry
    d = np.sqrt(u * u + v * v)
    return _sigmoid((1.0 - d) * min(rx, ry) / edge)


def _blob(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, sigma: float) -> np.ndarray:
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * sigma * sigma))


def _segment(
    xx: np.ndarray, yy: np.ndarray, x0: float, y0: float, x1: float, y1: float, half_width: float, edge: float
) -> np.ndarray:
    """Soft line segment mask in [0, 1]: thin crisp structures (vessels, dural tails, fibres)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    d = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
    return _sigmoid((half_width - d) / edge)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency texture (about unit variance): a coarse random grid upsampled bicubically."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float64)


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur on the first two axes in plain numpy (no BLAS), so results are bit-stable."""
    if sigma_px <= 0:
        return img
    for axis in (0, 1):
        n = img.shape[axis]
        r = min(max(1, int(np.ceil(3.0 * sigma_px))), n - 1)
        t = np.arange(-r, r + 1, dtype=np.float64)
        k = np.exp(-t * t / (2.0 * sigma_px * sigma_px))
        k /= k.sum()
        pad = [(0, 0)] * img.ndim
        pad[axis] = (r, r)
        p = np.pad(img, pad, mode="reflect")
        acc = np.zeros_like(img)
        for i, w in enumerate(k):
            sl = [slice(None)] * img.ndim
            sl[axis] = slice(i, i + n)
            acc += w * p[tuple(sl)]
        img = acc
    return img


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def _save_png(arr_u8: np.ndarray, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr_u8).save(path, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)


def _save_jpeg(img: Image.Image, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=_JPEG_QUALITY, optimize=False, progressive=False)


# --------------------------------------------------------------------------------------------------
# SARS-CoV-2 CT: COVID/ "Covid (i).png", non-COVID/ "Non-Covid (i).png"


def _write_ct(root: pathlib.Path, n: int, size: int, seed: int, ds: int) -> None:
    for cls, (folder, stem) in enumerate((("COVID", "Covid"), ("non-COVID", "Non-Covid"))):
        for i in range(n):
            gray = _ct_image(_rng(seed, ds, _ROLE_IMAGE, cls, i), covid=(cls == 0), size=size)
            _save_png(np.repeat(_to_u8(gray)[:, :, None], 3, axis=2), root / folder / f"{stem} ({i + 1}).png")


def _ct_image(rng: np.random.Generator, covid: bool, size: int) -> np.ndarray:
    """Chest CT slice. Each class has its own visible structure (a class marked only by the absence
    of a finding is what a few fine-tuning steps cannot learn): COVID = large, soft, peripheral
    ground-glass patches in both lungs; non-COVID = clear lungs whose bronchovascular tree shows as
    crisp branching lines. Mean intensity is reset to a class-independent level."""
    xx, yy = _grid(size)
    px = 2.0 / size
    scale = rng.uniform(1.2, 1.35)  # a lung-window crop: the lungs fill most of the frame
    cx, cy = rng.uniform(-0.07, 0.07, 2)
    brx, bry = scale * rng.uniform(0.84, 0.96), scale * rng.uniform(0.62, 0.78)
    body = _ellipse(xx, yy, cx, cy, brx, bry, rng.uniform(-0.08, 0.08), edge=1.2 * px)
    tissue = rng.uniform(0.55, 0.7) + 0.06 * _smooth_noise(rng, size, max(6, size // 6))
    fat = body - _ellipse(xx, yy, cx, cy, 0.9 * brx, 0.88 * bry, edge=1.2 * px)  # subcutaneous fat
    img = 0.03 + body * (tissue - 0.03) - 0.2 * fat
    img += 0.35 * _ellipse(xx, yy, cx, cy + 0.74 * bry, 0.1 * brx, 0.12 * bry, edge=px)  # spine

    lungs = np.zeros_like(xx)
    lung_params = []
    for side in (-1.0, 1.0):
        lx = cx + side * brx * rng.uniform(0.38, 0.46)
        ly = cy - bry * rng.uniform(0.0, 0.1)
        lrx, lry = brx * rng.uniform(0.3, 0.36), bry * rng.uniform(0.64, 0.78)
        ang = side * rng.uniform(0.0, 0.25)
        lung_params.append((side, lx, ly, lrx, lry, ang))
        lungs = np.maximum(lungs, _ellipse(xx, yy, lx, ly, lrx, lry, ang, edge=1.2 * px))
    img = img * (1.0 - lungs) + (rng.uniform(0.08, 0.14) + 0.03 * _smooth_noise(rng, size, max(8, size // 3))) * lungs

    def in_lung(k: int, rho: float, th: float) -> tuple[float, float]:
        _, lx, ly, lrx, lry, ang = lung_params[k]
        u, v = rho * np.cos(th) * lrx, rho * np.sin(th) * lry
        c, s = np.cos(ang), np.sin(ang)
        return lx + c * u - s * v, ly + s * u + c * v

    findings = np.zeros_like(xx)
    for _ in range(int(rng.integers(4, 10))):  # vessels seen end-on: small dots, both classes
        vx, vy = in_lung(int(rng.integers(2)), rng.uniform(0.0, 0.85), rng.uniform(0, 2 * np.pi))
        findings += rng.uniform(0.2, 0.4) * _blob(xx, yy, vx, vy, px * rng.uniform(0.5, 0.9))
    if covid:
        findings += _ground_glass(rng, xx, yy, lung_params, in_lung, size)
    else:
        findings += _vessel_tree(rng, xx, yy, lung_params, in_lung, px)
    img += findings * lungs

    img = _blur(img, 0.5)
    img *= rng.uniform(0.3, 0.4) / img.mean()  # window/level: mean intensity carries no class
    img += rng.normal(0.0, rng.uniform(0.02, 0.04), img.shape)
    return img


def _ground_glass(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, lung_params: list,
                  in_lung: _LungPoint, size: int) -> np.ndarray:
    """Multifocal, peripheral, bilateral hazy patches with a mottled (crazy-paving) texture."""
    out = np.zeros_like(xx)
    for p in range(int(rng.integers(6, 10))):
        k = p % 2  # alternate lungs: always bilateral
        lr = min(lung_params[k][3], lung_params[k][4])
        gx, gy = in_lung(k, rng.uniform(0.4, 0.85), rng.uniform(0, 2 * np.pi))
        patch = np.zeros_like(xx)
        for _ in range(3):
            sx, sy = gx + rng.normal(0, 0.3 * lr), gy + rng.normal(0, 0.3 * lr)
            patch += _blob(xx, yy, sx, sy, lr * rng.uniform(0.35, 0.55))
        out += rng.uniform(0.3, 0.45) * np.clip(patch, 0, 1)
    mottle = np.clip(0.65 + 0.5 * _smooth_noise(rng, size, max(8, size // 4)), 0.2, 1.3)
    return _blur(np.clip(out, 0, 0.6) * mottle, 0.8 * size / 64)


def _vessel_tree(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, lung_params: list,
                 in_lung: _LungPoint, px: float) -> np.ndarray:
    """Clear lungs, sharply seen: bronchovascular trees as crisp lines from each hilum towards the
    pleura, forking twice, and a few dense, sharp-edged nodules (granulomas)."""
    out = np.zeros_like(xx)
    for k, (side, *_rest) in enumerate(lung_params):
        lateral = 0.0 if side > 0 else np.pi
        reach = 2 * min(lung_params[k][3], lung_params[k][4])
        for _ in range(int(rng.integers(4, 6))):
            th = lateral + rng.uniform(-1.3, 1.3)
            x0, y0 = in_lung(k, rng.uniform(0.55, 0.8), np.pi - lateral + rng.uniform(-0.6, 0.6))
            out = np.maximum(out, _branches(rng, xx, yy, x0, y0, th, reach, px))
        for _ in range(int(rng.integers(1, 4))):
            nx, ny = in_lung(k, rng.uniform(0.2, 0.85), rng.uniform(0, 2 * np.pi))
            r = px * rng.uniform(1.6, 2.6)
            out = np.maximum(out, rng.uniform(0.5, 0.7) * _ellipse(xx, yy, nx, ny, r, r, edge=0.4 * px))
    return out


def _branches(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, x0: float, y0: float, angle: float,
              reach: float, px: float) -> np.ndarray:
    """One vessel from (x0, y0) that forks twice, each generation shorter, thinner and fainter."""
    out = np.zeros_like(xx)
    amp = rng.uniform(0.45, 0.6)
    stack = [(x0, y0, angle, 0.9, 0)]  # start, direction, half-width (px), generation
    while stack:
        x0, y0, ang, width, depth = stack.pop()
        length = rng.uniform(0.35, 0.55) * 0.6 ** depth * reach
        x1, y1 = x0 + length * np.cos(ang), y0 + length * np.sin(ang)
        out = np.maximum(out, amp * 0.85 ** depth * _segment(xx, yy, x0, y0, x1, y1, width * px, 0.35 * px))
        if depth < 2:
            stack += [(x1, y1, ang + turn * rng.uniform(0.3, 0.6), 0.75 * width, depth + 1) for turn in (-1.0, 1.0)]
    return out


# --------------------------------------------------------------------------------------------------
# BreaKHis: BreaKHis_v1/histology_slides/breast/<benign|malignant>/SOB/<subtype>/SOB_<B|M>_<code>_<pid>/<mag>X/...


def _breakhis_patient_ids(seed: int, ds: int, count: int) -> list[str]:
    """Ids like '14-22549AB', unique over the whole dataset (patients never span both classes)."""
    rng = _rng(seed, ds, _ROLE_PATIENT_IDS)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    ids: list[str] = []
    while len(ids) < count:
        year = int(rng.integers(13, 15))
        digits = int(rng.integers(100, 100000))
        suffix = "".join(rng.choice(letters, size=int(rng.integers(1, 3))))
        pid = f"{year}-{digits}{suffix}"
        if pid not in ids:
            ids.append(pid)
    return ids


def _write_breakhis(root: pathlib.Path, n: int, size: int, seed: int, ds: int) -> None:
    n_patients = max(2, n // 8)
    pids = _breakhis_patient_ids(seed, ds, 2 * n_patients)
    base = root / "BreaKHis_v1" / "histology_slides" / "breast"
    for cls, label in enumerate(("benign", "malignant")):
        letter = "B" if cls == 0 else "M"
        subtypes = _BREAKHIS_SUBTYPES[label]
        for p in range(n_patients):
            subtype, code = subtypes[p % len(subtypes)]
            pid = pids[cls * n_patients + p]
            stain = _patient_stain(_rng(seed, ds, _ROLE_PATIENT, cls, p))
            pdir = base / label / "SOB" / subtype / f"SOB_{letter}_{code}_{pid}"
            n400 = n // n_patients + (1 if p < n % n_patients else 0)
            for mag, count in [(m, _BREAKHIS_EXTRA_PER_MAG) for m in _BREAKHIS_EXTRA_MAGS] + [(400, n400)]:
                for seq in range(1, count + 1):
                    rng = _rng(seed, ds, _ROLE_IMAGE, cls * 1000 + p, mag, seq)
                    rgb = _histology_image(rng, malignant=(cls == 1), subtype=code, stain=stain, size=size, mag=mag)
                    _save_png(_to_u8(rgb), pdir / f"{mag}X" / f"SOB_{letter}_{code}-{pid}-{mag}-{seq:03d}.png")


def _patient_stain(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """Per-patient H&E appearance; slides differ in stain, so patient identity shows as in the real data."""
    h = np.abs(np.array([0.65, 0.70, 0.29]) + rng.normal(0.0, 0.06, 3))
    e = np.abs(np.array([0.07, 0.99, 0.11]) + rng.normal(0.0, 0.06, 3))
    return {
        "h": h / np.linalg.norm(h),
        "e": e / np.linalg.norm(e),
        "h_scale": float(rng.uniform(0.75, 1.3)),
        "e_scale": float(rng.uniform(0.7, 1.35)),
        "bg": 1.0 - rng.uniform(0.0, 0.08, 3),
    }


def _stamp_nucleus(
    hmap: np.ndarray,
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    angle: float,
    density: float,
    wobble: float,
    phase: np.ndarray,
) -> None:
    """Draws one nucleus (pixel units) into the haematoxylin map; only a local crop is touched."""
    size = hmap.shape[0]
    reach = max(rx, ry) * (1.0 + wobble) + 2.0
    x0, x1 = max(0, int(cx - reach)), min(size, int(cx + reach) + 2)
    y0, y1 = max(0, int(cy - reach)), min(size, int(cy + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    dx, dy = xs - cx, ys - cy
    c, s = np.cos(angle), np.sin(angle)
    u = (c * dx + s * dy) / rx
    v = (-s * dx + c * dy) / ry
    rho = np.sqrt(u * u + v * v)
    th = np.arctan2(v, u)
    limit = 1.0 + wobble * (0.6 * np.sin(2 * th + phase[0]) + 0.4 * np.sin(3 * th + phase[1]))
    m = _sigmoid((limit - rho) * min(rx, ry) / 0.7)
    crop = hmap[y0:y1, x0:x1]
    np.maximum(crop, density * m, out=crop)


def _histology_image(
    rng: np.random.Generator,
    malignant: bool,
    subtype: str,
    stain: dict,
    size: int,
    mag: int,
) -> np.ndarray:
    """H&E-like RGB in [0, 1]. Each class has its own visible architecture: benign = glands (white
    lumens ringed by one layer of small regular nuclei) in pink, streaky collagen; malignant =
    crowded sheets, cords or nests of large, irregular, dark nuclei without lumens. Total stain
    (so brightness) is reset to a class-independent level; stain colour varies per patient."""
    S = float(size)
    f = (mag / 400.0) ** 0.5  # lower magnification: smaller, more numerous structures
    count_f = min(1.0 / (f * f), 3.0)
    xx, yy = _grid(size)
    hmap = np.zeros((size, size))
    emap = rng.uniform(0.45, 0.7) + 0.1 * _smooth_noise(rng, size, 5)
    for _ in range(int(rng.integers(0, 2))):  # white spaces (fat, tears) in both classes
        hole = _ellipse(xx, yy, *rng.uniform(-0.9, 0.9, 2), *rng.uniform(0.06, 0.16, 2), rng.uniform(0, np.pi), edge=0.03)
        emap *= 1.0 - 0.9 * hole

    def nucleus(x: float, y: float, r: float, aspect: float, dens: float, wob: float, ang: float | None = None) -> None:
        _stamp_nucleus(
            hmap, x, y, r * aspect, r, rng.uniform(0, np.pi) if ang is None else ang, dens, wob, rng.uniform(0, 2 * np.pi, 2)
        )

    if not malignant:
        emap *= 1.0 + 0.2 * _collagen(rng, xx, yy, size)
        r0 = S * rng.uniform(0.028, 0.034) * f
        dens0 = rng.uniform(0.8, 1.05)
        n_glands = {"A": (4, 7), "F": (3, 5), "PT": (3, 5), "TA": (5, 9)}[subtype]
        g_size = {"A": (0.1, 0.14), "F": (0.12, 0.18), "PT": (0.12, 0.18), "TA": (0.08, 0.11)}[subtype]
        for _ in range(max(1, int(round(rng.integers(*n_glands) * count_f)))):
            gx, gy = rng.uniform(0.12, 0.88, 2) * S
            gr = S * rng.uniform(*g_size) * f
            squash = rng.uniform(0.3, 0.55) if subtype in ("F", "PT") else rng.uniform(0.65, 1.0)
            gang = rng.uniform(0, np.pi)
            lumen = _ellipse(xx, yy, gx / S * 2 - 1, gy / S * 2 - 1, gr / S * 2 * 0.72, gr / S * 2 * 0.72 * squash, gang, edge=0.02)
            emap *= 1.0 - 0.92 * lumen
            k = max(6, int(round(2 * np.pi * gr / (2.2 * r0))))
            for t in np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 2 * np.pi):
                u, v = gr * np.cos(t), gr * squash * np.sin(t)
                x = gx + np.cos(gang) * u - np.sin(gang) * v + rng.normal(0, 0.08 * r0)
                y = gy + np.sin(gang) * u + np.cos(gang) * v + rng.normal(0, 0.08 * r0)
                nucleus(x, y, r0 * rng.uniform(0.92, 1.08), rng.uniform(1.0, 1.2), dens0 * rng.uniform(0.9, 1.1), 0.03)
        n_stroma = {"A": (3, 6), "F": (5, 9), "PT": (8, 14), "TA": (2, 5)}[subtype]
        for _ in range(int(round(rng.integers(*n_stroma) * count_f))):  # spindle-shaped, thin, pale
            nucleus(*rng.uniform(0, S, 2), 0.45 * r0, rng.uniform(2.2, 3.2), dens0 * 0.5, 0.03)
    else:
        r0 = S * rng.uniform(0.042, 0.055) * f
        dens0 = rng.uniform(1.1, 1.5)
        pts: list[tuple[float, float]] = []
        if subtype in ("DC", "MC"):
            if subtype == "MC":  # pale mucin pools around floating clusters
                emap *= 0.4 + 0.3 * np.clip(0.5 + 0.5 * _smooth_noise(rng, size, 4), 0, 1)
            n_clusters, per = ((2, 4), (14, 22)) if subtype == "DC" else ((3, 5), (8, 12))
            for _ in range(int(rng.integers(*n_clusters))):
                c = rng.uniform(0.15, 0.85, 2) * S
                sd = S * rng.uniform(0.08, 0.13)
                pts += [tuple(c + rng.normal(0, sd, 2)) for _ in range(int(round(rng.integers(*per) * count_f)))]
        else:
            # LC: single-file cords; PC: two-sided rows along fronds
            n_rows, per = ((4, 7), (7, 11)) if subtype == "LC" else ((3, 5), (9, 13))
            for _ in range(int(rng.integers(*n_rows))):
                a, b = rng.uniform(0, S, 2), rng.uniform(0, S, 2)
                normal = np.array([a[1] - b[1], b[0] - a[0]]) / (np.linalg.norm(a - b) + 1e-9)
                for t in rng.uniform(0, 1, int(round(rng.integers(*per) * count_f))):
                    offset = 0.0 if subtype == "LC" else rng.choice([-1.0, 1.0]) * 1.5 * r0
                    pts.append(tuple(a + t * (b - a) + normal * (offset + rng.normal(0, 0.3 * r0))))
        pts += [tuple(rng.uniform(0, S, 2)) for _ in range(int(round(rng.integers(6, 12) * count_f)))]
        shrink = 0.85 if subtype == "LC" else 1.0
        for x, y in pts:
            nucleus(
                x, y, r0 * shrink * rng.uniform(0.75, 1.35), rng.uniform(1.0, 1.6),
                dens0 * rng.uniform(0.85, 1.15), rng.uniform(0.12, 0.28),
            )

    hmap = _blur(hmap, 0.4 * S / 64) + 0.04
    emap = np.clip(_blur(emap, 0.5 * S / 64), 0.02, None)
    level = rng.uniform(0.45, 1.0) / float((hmap + emap).mean())  # total stain carries no class
    h_img = hmap * level * stain["h_scale"] * rng.uniform(0.93, 1.07)
    e_img = emap * level * stain["e_scale"] * rng.uniform(0.93, 1.07)
    od = 1.3 * (h_img[:, :, None] * stain["h"] + e_img[:, :, None] * stain["e"])
    rgb = stain["bg"] * np.exp(-od)
    return rgb + rng.normal(0.0, 0.015, rgb.shape)


def _collagen(rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, size: int) -> np.ndarray:
    """Wavy, roughly parallel collagen bundles in [-1, 1]: the streaky texture of benign stroma."""
    phi = rng.uniform(0, np.pi)
    along = np.cos(phi) * xx + np.sin(phi) * yy
    return np.sin(along * rng.uniform(14, 20) + 2.5 * _smooth_noise(rng, size, 4))


# --------------------------------------------------------------------------------------------------
# Brain tumour MRI: Training|Testing/<cls>/Tr-<pp>_<NNNN>.jpg


def _write_brain(root: pathlib.Path, n: int, size: int, seed: int, ds: int) -> None:
    n_train = min(max(round(0.8 * n), 1), n - 1)
    for cls, (folder, short) in enumerate(_BRAIN_CLASSES):
        for i in range(n):
            gray = _to_u8(_mri_image(_rng(seed, ds, _ROLE_IMAGE, cls, i), folder, size))
            # The real set mixes grayscale and RGB (gray content) JPEGs; alternate so both always occur.
            img = Image.fromarray(gray) if i % 2 == 0 else Image.fromarray(gray).convert("RGB")
            if i < n_train:
                path = root / "Training" / folder / f"Tr-{short}_{i + 1:04d}.jpg"
            else:
                path = root / "Testing" / folder / f"Te-{short}_{i - n_train + 1:04d}.jpg"
            _save_jpeg(img, path)


def _mri_image(rng: np.random.Generator, cls: str, size: int) -> np.ndarray:
    """Axial T1-post-contrast-like head. Every class has its own visible structure: glioma = an
    irregular ring-enhancing mass with a dark necrotic core and dark oedema inside a hemisphere;
    meningioma = a large, homogeneous, very bright mass on the skull with a dural tail; pituitary =
    a bright "snowman" mass low in the midline; notumor = full-size ventricles and crisp cortical
    sulci, which a tumour's mass effect compresses and effaces. Mean intensity is reset to a
    class-independent level."""
    xx, yy = _grid(size)
    px = 2.0 / size
    cx, cy = rng.uniform(-0.07, 0.07, 2)
    scale = rng.uniform(0.85, 1.0)
    hrx, hry = scale * rng.uniform(0.72, 0.82), scale * rng.uniform(0.84, 0.94)
    ang = rng.uniform(-0.15, 0.15)
    # head-aligned coordinates, so lesion sites follow the head's rotation
    c, s = np.cos(ang), np.sin(ang)
    hx = c * (xx - cx) + s * (yy - cy)
    hy = -s * (xx - cx) + c * (yy - cy)

    head = _ellipse(hx, hy, 0, 0, hrx, hry, edge=0.6 * px)
    bone_in = _ellipse(hx, hy, 0, 0, 0.89 * hrx, 0.9 * hry, edge=0.5 * px)
    brx, bry = 0.84 * hrx, 0.86 * hry
    brain = _ellipse(hx, hy, 0, 0, brx, bry, edge=0.8 * px)
    img = rng.uniform(0.7, 0.9) * (head - bone_in) + 0.12 * (bone_in - brain)
    img += brain * (rng.uniform(0.4, 0.5) + 0.05 * _smooth_noise(rng, size, max(6, size // 5)))

    tumour = cls != "notumor"
    side = float(rng.choice([-1.0, 1.0]))  # the lesion's hemisphere (glioma, meningioma)
    depth = rng.uniform(0.05, 0.2) if tumour else rng.uniform(0.55, 0.75)  # effaced by mass effect | crisp
    img *= 1.0 - brain * _sulci(rng, hx, hy, brx, bry, depth)
    img = _ventricles(rng, img, hx, hy, hrx, hry, px, squeeze=rng.uniform(0.35, 0.6) if tumour else 1.0,
                      shift=-side * brx * rng.uniform(0.04, 0.1) if cls in ("glioma", "meningioma") else 0.0)
    img -= 0.06 * _ellipse(hx, hy, 0, 0, 0.8 * px, 0.8 * hry, edge=px)  # midline fissure

    if cls == "glioma":
        img = _glioma(rng, img, hx, hy, side * brx * rng.uniform(0.3, 0.5), bry * rng.uniform(-0.45, 0.3), size, px)
    elif cls == "meningioma":
        img = _meningioma(rng, img, hx, hy, brx, bry, px) * bone_in + img * (1 - bone_in)
    elif cls == "pituitary":
        img = _pituitary(rng, img, hx, hy, bry, size, px)

    img = _blur(img, 0.5)
    img = np.clip(img, 0, None) ** rng.uniform(0.85, 1.2)
    img *= rng.uniform(0.26, 0.36) / img.mean()  # window/level: mean intensity carries no class
    # magnitude images have Rician-like noise: never negative in the background
    return np.abs(img + rng.normal(0.0, rng.uniform(0.01, 0.03), img.shape))


def _sulci(
    rng: np.random.Generator, hx: np.ndarray, hy: np.ndarray, brx: float, bry: float, depth: float
) -> np.ndarray:
    """Cortical sulci as a [0, depth] darkening map: dark clefts of uneven length from the surface
    inwards, over a slightly darker grey-matter ribbon with a wavy border."""
    rr = np.sqrt((hx / brx) ** 2 + (hy / bry) ** 2)
    th = np.arctan2(hy / bry, hx / brx)
    ph = rng.uniform(0, 2 * np.pi, 6)
    k = int(rng.integers(14, 19))
    wave = np.cos(k * th + ph[0] + 0.9 * np.sin(3 * th + ph[1]) + 0.5 * np.sin(7 * th + ph[2]))
    reach = 0.72 + 0.07 * np.sin(5 * th + ph[3]) + 0.06 * np.sin(11 * th + ph[4]) + 0.05 * np.sin(17 * th + ph[5])
    clefts = _sigmoid((rr - reach) / 0.035) * _sigmoid((wave - 0.6) / 0.08)
    ribbon = _sigmoid((rr - 0.8 - 0.04 * wave) / 0.03)
    return depth * np.maximum(clefts, 0.3 * ribbon)


def _ventricles(rng: np.random.Generator, img: np.ndarray, hx: np.ndarray, hy: np.ndarray, hrx: float, hry: float,
                px: float, squeeze: float, shift: float) -> np.ndarray:
    """Dark butterfly-shaped lateral ventricles; `squeeze` < 1 and `shift` are a mass effect."""
    for side in (-1.0, 1.0):
        vx = shift + side * hrx * rng.uniform(0.1, 0.15) * (0.6 + 0.4 * squeeze)
        vy = -hry * rng.uniform(0.0, 0.1)
        vent = _ellipse(hx, hy, vx, vy, squeeze * hrx * rng.uniform(0.08, 0.11), hry * rng.uniform(0.2, 0.28),
                        -side * rng.uniform(0.1, 0.35), edge=px)
        img = img * (1 - vent) + 0.08 * vent
    return img


def _glioma(rng: np.random.Generator, img: np.ndarray, hx: np.ndarray, hy: np.ndarray, gx: float, gy: float,
            size: int, px: float) -> np.ndarray:
    """Irregular mass: dark oedema halo, bright enhancing rim, dark necrotic core."""
    r = rng.uniform(0.18, 0.26)
    dx, dy = hx - gx, hy - gy
    th = np.arctan2(dy, dx)
    bumpy = 1.0 + 0.18 * np.sin(3 * th + rng.uniform(0, 2 * np.pi)) + 0.1 * np.sin(5 * th + rng.uniform(0, 2 * np.pi))
    rr = np.sqrt(dx * dx + dy * dy) / (r * bumpy)
    edge = 0.8 * px / r
    img = img * (1.0 - rng.uniform(0.3, 0.5) * _sigmoid((1.7 - rr) / 0.2))  # oedema
    mass = _sigmoid((1.0 - rr) / edge)
    core = _sigmoid((rng.uniform(0.5, 0.65) - rr) / edge)
    rim = rng.uniform(0.75, 0.95) + 0.06 * _smooth_noise(rng, size, max(6, size // 5))
    return img * (1 - mass) + mass * (rim * (1 - core) + rng.uniform(0.1, 0.2) * core)


def _pituitary(rng: np.random.Generator, img: np.ndarray, hx: np.ndarray, hy: np.ndarray, bry: float,
               size: int, px: float) -> np.ndarray:
    """Sellar mass low in the midline: a tall bright "snowman" in a dark CSF cistern, flanked by
    the two dark flow voids of the carotid arteries."""
    x0, y0 = rng.normal(0, 0.03), bry * rng.uniform(0.45, 0.55)
    r = rng.uniform(0.11, 0.14)
    cistern = _ellipse(hx, hy, x0, y0 - 0.6 * r, 1.9 * r, 2.3 * r, edge=1.5 * px)
    img = img * (1 - rng.uniform(0.45, 0.6) * cistern)
    for side in (-1.0, 1.0):
        void = _ellipse(hx, hy, x0 + side * 1.9 * r, y0 + 0.2 * r, 0.45 * r, 0.45 * r, edge=0.6 * px)
        img = img * (1 - void) + 0.05 * void
    mass = np.maximum(_ellipse(hx, hy, x0, y0, 1.1 * r, r, edge=0.7 * px),
                      _ellipse(hx, hy, x0, y0 - 1.3 * r, 0.7 * r, 0.9 * r, edge=0.7 * px))
    return img * (1 - mass) + mass * (rng.uniform(0.8, 0.95) + 0.04 * _smooth_noise(rng, size, 8))


def _meningioma(rng: np.random.Generator, img: np.ndarray, hx: np.ndarray, hy: np.ndarray, brx: float, bry: float,
                px: float) -> np.ndarray:
    """Extra-axial mass on the inner skull: large, homogeneous, very bright, a dark CSF cleft, a dural tail."""
    r = rng.uniform(0.22, 0.3)
    th = rng.uniform(0, 2 * np.pi)
    ex, ey = brx * np.cos(th), bry * np.sin(th)  # where it meets the skull
    mx, my = ex - np.cos(th) * 0.7 * r, ey - np.sin(th) * 0.7 * r
    squash = rng.uniform(0.8, 1.0)
    cleft = _ellipse(hx, hy, mx, my, r + 1.5 * px, squash * r + 1.5 * px, th, edge=0.6 * px)
    img = img * (1 - 0.6 * cleft)
    mass = _ellipse(hx, hy, mx, my, r, squash * r, th, edge=0.6 * px)
    img = img * (1 - mass) + rng.uniform(0.82, 0.97) * mass
    tx, ty = -np.sin(th), np.cos(th)  # along the skull, both ways
    for sgn in (-1.0, 1.0):
        x0, y0 = ex + sgn * tx * 0.8 * r, ey + sgn * ty * 0.8 * r
        tail = _segment(hx, hy, x0, y0, x0 + sgn * tx * 0.5 * r, y0 + sgn * ty * 0.5 * r, 0.6 * px, 0.4 * px)
        img = np.maximum(img, rng.uniform(0.6, 0.8) * tail)
    return img
