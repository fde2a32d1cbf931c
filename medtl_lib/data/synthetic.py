"""Procedural stand-ins for the kit's three datasets, written in the real Kaggle folder layouts.

Why this exists: the kit's real code path (folder scanning, decoding, training) has to run offline,
in tests and in the "smoke" profile, without the real downloads. The images are drawn with numpy and
saved with Pillow only. Every file gets its own generator seeded from (seed, dataset, class, image, ...),
so the same arguments give byte-identical files and no file depends on the order others were written in.

The class signal is real but not trivial: it lives in local structure (opacities, nuclei, masses) while
position, scale, contrast, stain and noise are jittered so that global brightness alone cannot separate
the classes.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image

SYNTHETIC_DATASETS: tuple[str, ...] = ("sarscov2_ct", "breakhis_400x", "brain_tumor_mri")

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
    n_per_class, size, seed = int(n_per_class), int(size), int(seed)

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

    ds = SYNTHETIC_DATASETS.index(name)
    writer = {0: _write_ct, 1: _write_breakhis, 2: _write_brain}[ds]
    writer(root, n_per_class, size, seed, ds)
    (root / "SYNTHETIC.txt").write_text(
        "Procedural synthetic images made by medtl (medtl_lib.data.synthetic), not real patient data.\n"
        f"name: {name}\nseed: {seed}\nn_per_class: {n_per_class}\nsize: {size}\n",
        encoding="utf-8",
    )
    return root


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
    """Chest CT slice; COVID differs only by ground-glass patches inside the lungs."""
    xx, yy = _grid(size)
    px = 2.0 / size
    scale = rng.uniform(0.8, 1.0)
    cx, cy = rng.uniform(-0.07, 0.07, 2)
    brx, bry = scale * rng.uniform(0.84, 0.96), scale * rng.uniform(0.62, 0.78)
    body = _ellipse(xx, yy, cx, cy, brx, bry, rng.uniform(-0.08, 0.08), edge=1.2 * px)
    tissue = rng.uniform(0.45, 0.58) + 0.04 * _smooth_noise(rng, size, 6)
    img = 0.03 + body * (tissue - 0.03)
    # spine: bright, posterior
    img += 0.35 * _ellipse(xx, yy, cx, cy + 0.74 * bry, 0.1 * brx, 0.12 * bry, edge=px)

    lungs = np.zeros_like(xx)
    lung_params = []
    for side in (-1.0, 1.0):
        lx = cx + side * brx * rng.uniform(0.36, 0.46)
        ly = cy - bry * rng.uniform(0.0, 0.1)
        lrx, lry = brx * rng.uniform(0.27, 0.35), bry * rng.uniform(0.6, 0.76)
        ang = side * rng.uniform(0.0, 0.25)
        lung_params.append((lx, ly, lrx, lry, ang))
        lungs = np.maximum(lungs, _ellipse(xx, yy, lx, ly, lrx, lry, ang, edge=1.2 * px))
    lung_val = rng.uniform(0.05, 0.12)
    img = img * (1.0 - lungs) + lung_val * lungs

    def point_in_lung(r_lo: float, r_hi: float) -> tuple[float, float, float]:
        lx, ly, lrx, lry, ang = lung_params[rng.integers(2)]
        rho, th = rng.uniform(r_lo, r_hi), rng.uniform(0, 2 * np.pi)
        u, v = rho * np.cos(th) * lrx, rho * np.sin(th) * lry
        c, s = np.cos(ang), np.sin(ang)
        return lx + c * u - s * v, ly + s * u + c * v, min(lrx, lry)

    # vessels: small bright dots, present in both classes
    vessels = np.zeros_like(xx)
    for _ in range(int(rng.integers(8, 22))):
        vx, vy, _ = point_in_lung(0.0, 0.9)
        vessels += rng.uniform(0.2, 0.45) * _blob(xx, yy, vx, vy, px * rng.uniform(0.5, 1.1))
    findings = np.zeros_like(xx)
    if covid:
        # patchy, peripheral ground-glass: clusters of broad blobs broken up by texture
        for _ in range(int(rng.integers(3, 8))):
            gx, gy, lr = point_in_lung(0.3, 0.95)
            patch = np.zeros_like(xx)
            for _ in range(3):
                sx, sy = gx + rng.normal(0, 0.25 * lr), gy + rng.normal(0, 0.25 * lr)
                patch += _blob(xx, yy, sx, sy, lr * rng.uniform(0.22, 0.5))
            findings += rng.uniform(0.18, 0.38) * np.clip(patch, 0, 1)
        texture = np.clip(0.7 + 0.4 * _smooth_noise(rng, size, max(6, size // 6)), 0.0, 1.3)
        findings = _blur(findings * texture, 1.0 * size / 64)
    elif rng.random() < 0.35:
        # an incidental small solid nodule, so "any bright spot" is not the COVID cue
        nx, ny, lr = point_in_lung(0.1, 0.8)
        findings += rng.uniform(0.25, 0.45) * _ellipse(xx, yy, nx, ny, 1.8 * px, 1.8 * px, edge=0.6 * px)
    img += (vessels + findings) * lungs

    img = _blur(img, 0.5)
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-0.04, 0.04)
    img += rng.normal(0.0, rng.uniform(0.012, 0.035), img.shape)
    return img


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
    """H&E-like RGB in [0, 1]: benign = sparse, regular nuclei in glands; malignant = dense, large, irregular, dark."""
    S = float(size)
    f = (mag / 400.0) ** 0.5  # lower magnification: smaller, more numerous nuclei
    count_f = min(1.0 / (f * f), 3.0)
    xx, yy = _grid(size)
    hmap = np.zeros((size, size))
    emap = rng.uniform(0.3, 0.75) + 0.15 * _smooth_noise(rng, size, 5) + 0.08 * _smooth_noise(rng, size, max(4, size // 5))
    # white spaces (fat, tears) in both classes
    for _ in range(int(rng.integers(0, 3))):
        hole = _ellipse(xx, yy, *rng.uniform(-0.9, 0.9, 2), *rng.uniform(0.08, 0.3, 2), rng.uniform(0, np.pi), edge=0.03)
        emap *= 1.0 - 0.9 * hole

    def nucleus(x: float, y: float, r: float, aspect: float, dens: float, wob: float, ang: float | None = None) -> None:
        _stamp_nucleus(
            hmap, x, y, r * aspect, r, rng.uniform(0, np.pi) if ang is None else ang, dens, wob, rng.uniform(0, 2 * np.pi, 2)
        )

    if not malignant:
        r0 = S * rng.uniform(0.028, 0.036) * f
        dens0 = rng.uniform(0.75, 1.05)
        n_glands = {"A": (4, 7), "F": (2, 4), "PT": (1, 3), "TA": (6, 10)}[subtype]
        n_stroma = {"A": (3, 8), "F": (8, 16), "PT": (18, 30), "TA": (2, 6)}[subtype]
        for _ in range(max(1, int(round(rng.integers(*n_glands) * count_f)))):
            gx, gy = rng.uniform(0.1, 0.9, 2) * S
            gr = S * rng.uniform(0.07, 0.12) * f
            squash = rng.uniform(0.6, 1.0) if subtype != "F" else rng.uniform(0.35, 0.6)
            gang = rng.uniform(0, np.pi)
            lumen = _ellipse(xx, yy, gx / S * 2 - 1, gy / S * 2 - 1, gr / S * 2 * 0.75, gr / S * 2 * 0.75 * squash, gang, edge=0.02)
            emap *= 1.0 - 0.8 * lumen
            k = max(5, int(round(2 * np.pi * gr / (2.3 * r0))))
            for t in np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 2 * np.pi):
                u, v = gr * np.cos(t), gr * squash * np.sin(t)
                x = gx + np.cos(gang) * u - np.sin(gang) * v + rng.normal(0, 0.1 * r0)
                y = gy + np.sin(gang) * u + np.cos(gang) * v + rng.normal(0, 0.1 * r0)
                nucleus(x, y, r0 * rng.uniform(0.92, 1.08), rng.uniform(1.0, 1.2), dens0 * rng.uniform(0.9, 1.1), 0.03)
        for _ in range(int(round(rng.integers(*n_stroma) * count_f))):
            # spindle-shaped stromal nuclei: thin and pale
            x, y = rng.uniform(0, S, 2)
            nucleus(x, y, 0.55 * r0, rng.uniform(2.0, 3.0), dens0 * 0.7, 0.03)
    else:
        r0 = S * rng.uniform(0.034, 0.046) * f
        dens0 = rng.uniform(1.15, 1.6)
        pts: list[tuple[float, float]] = []
        if subtype in ("DC", "MC"):
            if subtype == "MC":  # pale mucin pools around floating clusters
                emap *= 0.35 + 0.3 * np.clip(0.5 + 0.5 * _smooth_noise(rng, size, 4), 0, 1)
            n_clusters, per = ((2, 4), (10, 18)) if subtype == "DC" else ((2, 4), (7, 12))
            for _ in range(int(rng.integers(*n_clusters))):
                c = rng.uniform(0.15, 0.85, 2) * S
                sd = S * rng.uniform(0.07, 0.13)
                pts += [tuple(c + rng.normal(0, sd, 2)) for _ in range(int(round(rng.integers(*per) * count_f)))]
        else:
            # LC: single-file rows; PC: two-sided rows along fronds
            n_rows, per = ((3, 6), (6, 11)) if subtype == "LC" else ((2, 4), (8, 13))
            for _ in range(int(rng.integers(*n_rows))):
                a, b = rng.uniform(0, S, 2), rng.uniform(0, S, 2)
                normal = np.array([a[1] - b[1], b[0] - a[0]]) / (np.linalg.norm(a - b) + 1e-9)
                for t in rng.uniform(0, 1, int(round(rng.integers(*per) * count_f))):
                    offset = 0.0 if subtype == "LC" else rng.choice([-1.0, 1.0]) * 1.6 * r0
                    pts.append(tuple(a + t * (b - a) + normal * (offset + rng.normal(0, 0.3 * r0))))
        pts += [tuple(rng.uniform(0, S, 2)) for _ in range(int(round(rng.integers(3, 10) * count_f)))]
        shrink = 0.85 if subtype == "LC" else 1.0
        for x, y in pts:
            nucleus(
                x, y, r0 * shrink * rng.uniform(0.7, 1.4), rng.uniform(1.0, 1.7),
                dens0 * rng.uniform(0.85, 1.15), rng.uniform(0.1, 0.25),
            )

    hmap = _blur(hmap, 0.45 * S / 64) + 0.04
    emap = np.clip(_blur(emap, 0.6 * S / 64), 0.02, None)
    h_img = hmap * stain["h_scale"] * rng.uniform(0.93, 1.07)
    e_img = emap * stain["e_scale"] * rng.uniform(0.93, 1.07)
    od = 1.3 * (h_img[:, :, None] * stain["h"] + e_img[:, :, None] * stain["e"])
    rgb = stain["bg"] * np.exp(-od)
    return rgb + rng.normal(0.0, 0.015, rgb.shape)


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
    """Axial T1-post-contrast-like head; the class is the presence, shape and site of a bright lesion."""
    xx, yy = _grid(size)
    px = 2.0 / size
    cx, cy = rng.uniform(-0.07, 0.07, 2)
    scale = rng.uniform(0.85, 1.0)
    hrx, hry = scale * rng.uniform(0.7, 0.82), scale * rng.uniform(0.84, 0.94)
    ang = rng.uniform(-0.15, 0.15)
    # work in head-aligned coordinates so lesion sites follow the head's rotation
    c, s = np.cos(ang), np.sin(ang)
    hx = c * (xx - cx) + s * (yy - cy)
    hy = -s * (xx - cx) + c * (yy - cy)

    head = _ellipse(hx, hy, 0, 0, hrx, hry, edge=0.6 * px)
    bone_in = _ellipse(hx, hy, 0, 0, 0.89 * hrx, 0.9 * hry, edge=0.5 * px)
    brain = _ellipse(hx, hy, 0, 0, 0.84 * hrx, 0.86 * hry, edge=0.8 * px)
    skull_val = rng.uniform(0.7, 0.9)
    img = skull_val * (head - bone_in) + 0.12 * (bone_in - brain)
    tissue = rng.uniform(0.38, 0.5) + 0.05 * _smooth_noise(rng, size, max(6, size // 5))
    img += brain * tissue
    # lateral ventricles: dark, butterfly-shaped, with the occasional bright choroid plexus dot
    for side in (-1.0, 1.0):
        vx, vy = side * hrx * rng.uniform(0.08, 0.14), -hry * rng.uniform(0.0, 0.1)
        vent = _ellipse(hx, hy, vx, vy, hrx * rng.uniform(0.06, 0.1), hry * rng.uniform(0.18, 0.28), -side * rng.uniform(0.1, 0.35), edge=px)
        img = img * (1 - vent) + 0.1 * vent
        if rng.random() < 0.4:
            img += rng.uniform(0.2, 0.4) * _blob(hx, hy, vx, vy + 0.15 * hry, 1.0 * px)
    img -= 0.06 * _ellipse(hx, hy, 0, 0, 0.8 * px, 0.8 * hry, edge=px)  # midline fissure

    brx, bry = 0.84 * hrx, 0.86 * hry
    if cls == "glioma":
        # diffuse, irregular mass inside one hemisphere, sometimes ring-enhancing with a dark core
        side = rng.choice([-1.0, 1.0])
        gx, gy = side * brx * rng.uniform(0.25, 0.55), bry * rng.uniform(-0.5, 0.35)
        mass = np.zeros_like(xx)
        rmax = 0.0
        for _ in range(int(rng.integers(3, 7))):
            sg = rng.uniform(0.06, 0.15)
            rmax = max(rmax, sg)
            mass += _blob(hx, hy, gx + rng.normal(0, 0.06), gy + rng.normal(0, 0.06), sg)
        mass = np.clip(mass, 0, 1.2) * np.clip(0.6 + 0.5 * _smooth_noise(rng, size, max(6, size // 5)), 0, 1.4)
        amp = rng.uniform(0.3, 0.55)
        lesion = amp * mass
        if rng.random() < 0.4:
            lesion -= amp * 0.7 * _blob(hx, hy, gx, gy, 0.5 * rmax)
        img += lesion * brain
    elif cls == "meningioma":
        # round, sharp-edged, homogeneous bright mass abutting the inner skull
        rm = rng.uniform(0.11, 0.22)
        th = rng.uniform(0, 2 * np.pi)
        ex, ey = brx * np.cos(th), bry * np.sin(th)
        mx, my = ex - np.cos(th) * 0.75 * rm, ey - np.sin(th) * 0.75 * rm
        mass = _ellipse(hx, hy, mx, my, rm, rm * rng.uniform(0.85, 1.0), th, edge=0.8 * px)
        level = rng.uniform(0.72, 0.92) + 0.03 * _smooth_noise(rng, size, 8)
        img = img * (1 - mass * head) + level * mass * head
    elif cls == "pituitary":
        # small bright blob low in the midline
        px_, py_ = rng.normal(0, 0.03), bry * rng.uniform(0.45, 0.65)
        r = rng.uniform(0.06, 0.1)
        blob = _ellipse(hx, hy, px_, py_, r * rng.uniform(1.0, 1.4), r, edge=1.2 * px)
        img = img * (1 - blob) + rng.uniform(0.75, 0.95) * blob

    img = _blur(img, 0.5)
    img = np.clip(img, 0, None) ** rng.uniform(0.8, 1.25)
    img = img * rng.uniform(0.8, 1.15) + rng.uniform(-0.02, 0.05)
    # magnitude images have Rician-like noise: never negative in the background
    return np.abs(img + rng.normal(0.0, rng.uniform(0.01, 0.035), img.shape))
