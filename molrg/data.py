r"""Real image data that needs no download, and the measurements the MoLRG paper makes on it.

The MoLRG paper rests on observations about real images (its section 1 and
figures 1a, 3a, 5b, 6 and 9): images lie near a union of low-dimensional
subspaces, a trained denoiser's Jacobian is low rank, and its leading singular
vectors edit an image semantically.  The paper shows them with U-Nets on
CIFAR-10, CelebA, FFHQ, AFHQ and MetFaces; this module brings a real image
dataset that ships *inside* an installed package, so every experiment runs
offline on a laptop:

* :func:`load_digits`: scikit-learn's bundled handwritten digits (UCI optical
  recognition of handwritten digits, test part): 1797 grey images of
  ``8 x 8`` pixels with integer intensities 0 to 16, 10 classes, ``n = 64``.
* :func:`load_image_patches`: ``8 x 8`` grey patches of the two photographs
  bundled with scikit-learn (``sklearn.datasets.load_sample_images``), a second,
  unlabelled natural-image dataset of the same dimension.

Scalings (``scaling=``), applied to the raw intensities ``v``:

``"unit"`` (default)
    ``v / v_max`` in ``[0, 1]`` (``v_max = 16`` for the digits, 255 for photos).
    The background is 0, so each class spans a *linear* subspace through the
    origin: the MoLRG model (SPEC A1) is linear, and this is the scaling every
    digits experiment uses.
``"symmetric"``
    ``2 v / v_max - 1`` in ``[-1, 1]``, the convention of image diffusion models
    (the paper's U-Nets).
``"raw"``
    ``v`` as floats.

Also here: :func:`energy_curve` (the cumulative energy ``sqrt(cumsum s^2) / ||s||_2``
of a data matrix's singular values, whose crossing of 0.99 is the energy rank of
the paper's eq. 46, :func:`molrg.jacobian.numerical_rank`) and
:func:`clustering_accuracy` (Hungarian-matched accuracy of a clustering).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import check_choice, check_int, check_matrix, check_random_state

__all__ = ["ImageDataset", "load_digits", "load_image_patches", "energy_curve", "intrinsic_dimension",
           "clustering_accuracy", "SCALINGS"]

SCALINGS = ("unit", "symmetric", "raw")


@dataclass(frozen=True)
class ImageDataset:
    """Images as rows, with labels (:func:`load_digits`, :func:`load_image_patches`).

    Attributes
    ----------
    X : array ``(N, n)``
        One flattened image per row (row-major pixels), scaled as ``scaling`` says.
    labels : int array ``(N,)``
        Class of each image (``-1`` for unlabelled data).
    image_shape : tuple of int
        ``(height, width)``, ``height * width == n``.
    name : str
        Where the data come from.
    scaling : {"unit", "symmetric", "raw"}
        See the module docstring.
    """

    X: np.ndarray
    labels: np.ndarray
    image_shape: tuple = field(default=(8, 8))
    name: str = ""
    scaling: str = "unit"

    @property
    def n(self) -> int:
        """Pixels per image."""
        return int(self.X.shape[1])

    @property
    def classes(self) -> np.ndarray:
        """The distinct labels, sorted."""
        return np.unique(self.labels)

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def images(self, X: Any = None) -> np.ndarray:
        """Rows of ``X`` (default: the data) as images ``(..., height, width)``."""
        X = self.X if X is None else np.asarray(X)
        return X.reshape(X.shape[:-1] + tuple(self.image_shape))

    def subset(self, classes: Sequence[int]) -> ImageDataset:
        """The images whose label is in ``classes`` (in their original order)."""
        classes = [int(c) for c in np.atleast_1d(classes)]
        unknown = sorted(set(classes) - set(self.classes.tolist()))
        if unknown or not classes:
            raise ValueError(f"classes must be a non-empty subset of {self.classes.tolist()}, got {classes}")
        keep = np.isin(self.labels, classes)
        return ImageDataset(self.X[keep], self.labels[keep], self.image_shape, self.name, self.scaling)

    def to_frame(self):
        """Tidy table: one row per image, ``label`` then the pixels ``p0 ... p{n-1}``."""
        import pandas as pd

        frame = pd.DataFrame(self.X, columns=[f"p{i}" for i in range(self.n)])
        frame.insert(0, "label", self.labels)
        return frame


def _scale(V: np.ndarray, v_max: float, scaling: str, dtype) -> np.ndarray:
    check_choice("scaling", scaling, SCALINGS)
    V = np.asarray(V, dtype=np.float64)
    if scaling == "unit":
        V = V / v_max
    elif scaling == "symmetric":
        V = 2.0 * V / v_max - 1.0
    elif scaling != "raw":  # pragma: no cover - validated above
        raise ValueError(f"scaling must be one of {list(SCALINGS)}, got {scaling!r}")
    return V.astype(np.float64 if dtype is None else dtype, copy=False)


def load_digits(*, scaling: str = "unit", classes: Sequence[int] | None = None, dtype=None) -> ImageDataset:
    """scikit-learn's bundled handwritten digits as rows, scaled, with labels.

    The 1797 images of ``8 x 8`` pixels (``n = 64``), intensities 0 to 16, 10
    classes of about 180 images each, shipped with scikit-learn
    (:func:`sklearn.datasets.load_digits`): nothing is downloaded.

    Parameters
    ----------
    scaling : {"unit", "symmetric", "raw"}, default "unit"
        ``v / 16`` in ``[0, 1]``, ``v / 8 - 1`` in ``[-1, 1]``, or the raw
        intensities (module docstring).
    classes : sequence of int in 0..9, optional
        Keep only these digits (default: all ten).
    dtype : numpy dtype, default float64

    Returns
    -------
    ImageDataset
        ``X`` ``(N, 64)``, ``labels`` ``(N,)``, ``image_shape == (8, 8)``.

    Examples
    --------
    >>> data = load_digits()
    >>> data.X.shape, float(data.X.min()), float(data.X.max())
    ((1797, 64), 0.0, 1.0)
    >>> len(load_digits(classes=[0, 1]))
    360
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    raw = _sk_load_digits()
    data = ImageDataset(_scale(raw.data, 16.0, scaling, dtype), np.asarray(raw.target, dtype=np.int64), (8, 8),
                        "sklearn digits (UCI optical recognition of handwritten digits)", scaling)
    return data if classes is None else data.subset(classes)


def load_image_patches(
    *, patch_size: int = 8, n_patches: int = 2000, scaling: str = "unit", random_state: Any = None, dtype=None
) -> ImageDataset:
    """Grey ``patch_size x patch_size`` patches of the two photographs bundled with scikit-learn.

    The photographs (``china.jpg`` and ``flower.jpg``, 427 x 640 colour images of
    :func:`sklearn.datasets.load_sample_images`) are converted to grey (mean of
    the three channels) and ``n_patches`` patches are drawn at uniformly random
    positions, half from each photograph.  Labels are the photograph (0 or 1).

    Parameters
    ----------
    patch_size : int, default 8
        Side of the square patches (``n = patch_size^2``).
    n_patches : int, default 2000
    scaling : {"unit", "symmetric", "raw"}, default "unit"
        Intensities ``v`` in 0..255 as ``v / 255``, ``2 v / 255 - 1`` or raw.
    random_state : None, int or numpy Generator
        Patch positions.
    dtype : numpy dtype, default float64

    Returns
    -------
    ImageDataset

    Examples
    --------
    >>> load_image_patches(n_patches=10, random_state=0).X.shape
    (10, 64)
    """
    from sklearn.datasets import load_sample_images

    patch_size = check_int("patch_size", patch_size, low=1, high=427)
    n_patches = check_int("n_patches", n_patches, low=1)
    rng = check_random_state(random_state)
    photos = [img.astype(np.float64).mean(-1) for img in load_sample_images().images]
    rows, labels = [], []
    for k, img in enumerate(photos):
        m = n_patches // len(photos) + (k < n_patches % len(photos))
        top = rng.integers(0, img.shape[0] - patch_size + 1, size=m)
        left = rng.integers(0, img.shape[1] - patch_size + 1, size=m)
        for i, j in zip(top, left):
            rows.append(img[i : i + patch_size, j : j + patch_size].reshape(-1))
        labels += [k] * m
    return ImageDataset(_scale(np.stack(rows), 255.0, scaling, dtype), np.asarray(labels, dtype=np.int64),
                        (patch_size, patch_size), "sklearn sample images (china.jpg, flower.jpg), grey patches",
                        scaling)


def energy_curve(X: Any, *, center: bool = False) -> np.ndarray:
    r"""Cumulative energy of the singular values of a data matrix: ``sqrt(cumsum s^2) / ||s||_2``.

    Entry ``r - 1`` is the fraction (of the 2-norm of all singular values) held by
    the top ``r`` directions; the energy rank of the paper's eq. 46 is the
    smallest ``r`` where it exceeds 0.99 (:func:`intrinsic_dimension`).

    Parameters
    ----------
    X : array ``(N, n)``
    center : bool, default False
        Subtract the mean row first (an affine rather than linear subspace).

    Returns
    -------
    array ``(min(N, n),)``, increasing to 1.

    Examples
    --------
    >>> energy_curve(np.diag([3.0, 4.0])).round(3).tolist()
    [0.8, 1.0]
    """
    X = check_matrix("X", X).astype(np.float64, copy=False)
    if center:
        X = X - X.mean(0)
    s = np.linalg.svd(X, compute_uv=False)
    total = np.sqrt(np.sum(s**2))
    if total == 0:
        raise ValueError("X has no energy (all rows equal to the mean): the energy curve is undefined")
    return np.sqrt(np.cumsum(s**2)) / total


def intrinsic_dimension(X: Any, *, threshold: float = 0.99, center: bool = False) -> int:
    """Energy rank of a data matrix (paper eq. 46): the smallest ``r`` with ``energy_curve(X)[r-1] > threshold``.

    The same rank as :func:`molrg.jacobian.numerical_rank` (``method="energy"``) gives a Jacobian.

    Parameters
    ----------
    X : array ``(N, n)``
    threshold : float in (0, 1), default 0.99
    center : bool, default False
        Of the centered data (affine dimension) instead of the raw rows (linear dimension).

    Examples
    --------
    >>> intrinsic_dimension(np.diag([1.0, 0.5, 1e-3]))
    2
    """
    from .jacobian import numerical_rank

    X = check_matrix("X", X).astype(np.float64, copy=False)
    return int(numerical_rank(X - X.mean(0) if center else X, method="energy", threshold=threshold))


def clustering_accuracy(labels_true: Any, labels_pred: Any) -> float:
    """Accuracy of a clustering after the best one-to-one matching of clusters to classes (Hungarian algorithm).

    Parameters
    ----------
    labels_true, labels_pred : int arrays ``(N,)``
        Classes and cluster indices (any integers; the numbers of classes and
        clusters may differ: unmatched ones count as errors).

    Returns
    -------
    float in [0, 1]

    Examples
    --------
    >>> clustering_accuracy([0, 0, 1, 1, 2], [5, 5, 3, 3, 3])
    0.8
    """
    from scipy.optimize import linear_sum_assignment

    t = np.asarray(labels_true).reshape(-1)
    p = np.asarray(labels_pred).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"labels_true and labels_pred must be non-empty and of equal length, got {t.size} and {p.size}")
    ct, ti = np.unique(t, return_inverse=True)
    cp, pi = np.unique(p, return_inverse=True)
    C = np.zeros((ct.size, cp.size))
    np.add.at(C, (ti, pi), 1)
    rows, cols = linear_sum_assignment(C, maximize=True)
    return float(C[rows, cols].sum() / t.size)
