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

    def test_batches(self, batch: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The held-out samples in batches of a static ``batch`` size (the ragged tail dropped), and their labels."""
        usable = len(self.x_test) - len(self.x_test) % batch
        return [self.x_test[i : i + batch] for i in range(0, usable, batch)], self.y_test[:usable]


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
    """A built-in dataset by name, or a user's ``.npz`` file (see :func:`load_npz_dataset`)."""
    if name.endswith(".npz"):
        return load_npz_dataset(name, input_shape)
    return DATASETS.get(name).load(input_shape)


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz_dataset(path: str, input_shape: tuple[int, ...]) -> Split:
    """A labelled dataset from an ``.npz`` with arrays x_train, y_train, x_test, y_test (optionally
    class_names); samples shaped like the model's input without its batch dim. Read without pickle."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _NPZ_KEYS if k not in data]
            if missing:
                raise InputError(f"{path} lacks {', '.join(missing)} (needs {', '.join(_NPZ_KEYS)})")
            arrays = {k: data[k] for k in _NPZ_KEYS}
            names = tuple(str(n) for n in data["class_names"]) if "class_names" in data else None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read dataset {path}: {exc}") from None
    sample = tuple(input_shape[1:])
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if tuple(x.shape[1:]) != sample or len(x) != len(y) or len(x) == 0 or y.ndim != 1:
            raise InputError(
                f"{path}: x_{part} {list(x.shape)} / y_{part} {list(y.shape)} do not fit the model's input "
                f"{list(input_shape)} (want N samples of {list(sample)} and N integer labels, N > 0)"
            )
    classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    return Split(
        arrays["x_train"].astype(np.float32), arrays["y_train"].astype(np.int64),
        arrays["x_test"].astype(np.float32), arrays["y_test"].astype(np.int64),
        names or tuple(str(i) for i in range(classes)),
    )  # fmt: skip


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
