"""Small labelled datasets that ship inside installed packages (nothing is downloaded).

``digits`` is scikit-learn's 1,797 8x8 handwritten digits (10 classes). It adapts to the model's
input: images ``(1, C, H, W)`` are resized bilinearly and the grey channel repeated; sequences
``(1, T, F)`` read the 64 pixels as T frames of F values (8x8 rows, or 64x1 pixel by pixel).
The held-out split is fixed by a seed so every command sees the same test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import InputError, MissingDependencyError
from edgekit.registry import Registry


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Digits:
    name: str = "digits"
    test_fraction: float = 0.2
    seed: int = 0

    def load(self, input_shape: tuple[int, ...]) -> Split:
        """Train/test arrays shaped per sample like ``input_shape`` without its batch dim, float32."""
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise MissingDependencyError("scikit-learn", "export", "the digits dataset") from None
        data = load_digits()
        pixels = (data.images.astype(np.float32) / 16.0 - 0.5) / 0.5  # (n, 8, 8) in [-1, 1]
        samples = _adapt(pixels, tuple(input_shape[1:]))
        order = np.random.default_rng(self.seed).permutation(len(samples))
        n_test = int(round(len(samples) * self.test_fraction))
        test, train = order[:n_test], order[n_test:]
        labels = data.target.astype(np.int64)
        return Split(samples[train], labels[train], samples[test], labels[test], tuple(str(i) for i in range(10)))


DATASETS: Registry[Digits] = Registry("dataset")
DATASETS.add("digits", Digits())


def load_dataset(name: str, input_shape: tuple[int, ...]) -> Split:
    return DATASETS.get(name).load(input_shape)


def _adapt(pixels: np.ndarray, sample_shape: tuple[int, ...]) -> np.ndarray:
    n = len(pixels)
    if len(sample_shape) == 3:  # (C, H, W) image
        channels, height, width = sample_shape
        resized = pixels if (height, width) == (8, 8) else _resize_bilinear(pixels, height, width)
        return np.ascontiguousarray(np.repeat(resized[:, None], channels, axis=1), dtype=np.float32)
    if len(sample_shape) == 2 and sample_shape[0] * sample_shape[1] == 64:  # (T, F) sequence
        return pixels.reshape(n, *sample_shape).astype(np.float32)
    raise InputError(
        f"the digits dataset fits image inputs (1, C, H, W) or sequences (1, T, F) with T*F = 64; "
        f"the model takes {(1, *sample_shape)}"
    )


def _interp_matrix(size_in: int, size_out: int) -> np.ndarray:
    """Rows of weights that resample a length-``size_in`` axis to ``size_out`` (half-pixel centres)."""
    scale = size_in / size_out
    centres = np.clip((np.arange(size_out) + 0.5) * scale - 0.5, 0, size_in - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = centres - low
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    matrix[np.arange(size_out), low] += 1 - frac
    matrix[np.arange(size_out), high] += frac
    return matrix


def _resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = _interp_matrix(images.shape[1], height)
    cols = _interp_matrix(images.shape[2], width)
    return np.einsum("hi,nij,wj->nhw", rows, images, cols).astype(np.float32)
