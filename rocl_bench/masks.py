"""Per-point encodings a record stores, and the one rule for matching budgets.

Masks (robust, clean-correct) are bit-packed; a minimum-norm cell's distances are zlib-compressed float32. Both
are base64 text, so a record stays one line of JSON. This module imports nothing of the package: record.py (the
Record type) and distances.py (what minimum-norm cells mean) both build on it.
"""
from __future__ import annotations

import base64
import binascii
import math
import zlib
from typing import Any, Iterable

import numpy as np


def encode_mask(mask: Any) -> str:
    """Bool tensor/array of length n -> base64 of numpy.packbits(mask, bitorder='little')."""
    if hasattr(mask, "detach"):  # torch tensor, without importing torch here
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask).astype(bool).reshape(-1)
    return base64.b64encode(np.packbits(arr, bitorder="little").tobytes()).decode("ascii")


def decode_mask(text: str, n: int) -> np.ndarray:
    """Inverse of encode_mask: a bool array of length n. Raises ValueError on a string that cannot be one."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as e:
        raise ValueError(f"robust_mask is not base64 ({e})") from None
    n = int(n)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"robust_mask holds {len(raw)} bytes, {(n + 7) // 8} expected for n={n}")
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n, bitorder="little").astype(bool)


def same_eps(a: float | None, b: float | None) -> bool:
    """Budgets that are the same threat model: 8/255 and the 0.0314 written in many scripts match (the alarms
    and every report group cells by budget with this one rule)."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=2e-3, abs_tol=1e-9)



DISTANCE_LIMIT = 1 << 24      # bytes a decompressed distances field may hold (4 M points); guards a zip bomb


def encode_distances(values: Iterable[float] | np.ndarray) -> str:
    """Per-point distances -> base64 of zlib-compressed little-endian float32 (what a record stores)."""
    if hasattr(values, "detach"):      # torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype="<f4").reshape(-1)
    return base64.b64encode(zlib.compress(arr.tobytes(), 9)).decode("ascii")


def decode_distances(text: str, n: int) -> np.ndarray:
    """Inverse of encode_distances: n float32 values, each >= 0 or +inf. ValueError on anything else."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        d = zlib.decompressobj()
        data = d.decompress(raw, DISTANCE_LIMIT)
        if d.unconsumed_tail:
            raise ValueError(f"distances decompress to more than {DISTANCE_LIMIT} bytes")
    except (binascii.Error, UnicodeEncodeError, AttributeError, zlib.error) as e:
        raise ValueError(f"distances are not base64 of zlib data ({e})") from None
    n = int(n)
    if len(data) != 4 * n:
        raise ValueError(f"distances hold {len(data) // 4} values, {n} expected for n={n}")
    arr = np.frombuffer(data, dtype="<f4").astype(np.float64)
    if np.isnan(arr).any() or (arr < 0).any():
        raise ValueError("distances must be >= 0 or +inf (found NaN or a negative value)")
    return arr
