"""Decoding any image file the datasets contain into an 8-bit RGB PIL image."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


class BadImageError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def is_image_file(name: str) -> bool:
    """Image extension and not a hidden/system file (.DS_Store, ._foo.jpg from macOS archives)."""
    base = os.path.basename(name)
    if base.startswith(".") or base.lower() == "thumbs.db":
        return False
    return os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert whatever mode a medical image arrives in to 8-bit RGB, keeping its contrast.

    16-bit and float images are rescaled from their own min..max (a plain ``convert('L')``
    clips 16-bit data to white); alpha is composited onto black, the background of scans.
    """
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(np.min(arr)), float(np.max(arr))
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX ...


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Fully decode ``path`` to RGB or raise :class:`BadImageError` saying why."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        with Image.open(path) as img:
            img.load()
            if min(img.size) < 1:
                raise BadImageError(path, f"image has no pixels ({img.size[0]}x{img.size[1]})")
            return to_rgb(img)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(path, "not an image Pillow can read (wrong extension or corrupt header)")
    except Image.DecompressionBombError as exc:
        raise BadImageError(path, f"image too large to decode safely ({exc})")
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(path, f"corrupt or truncated image ({exc})")
