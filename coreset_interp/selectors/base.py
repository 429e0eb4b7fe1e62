"""The coreset selector interface: one base class, one verb per method.

Every selector of ``SPEC.md`` section 1 works per class (class-balanced, as in the paper). The base class
:class:`Selector` owns everything that is common to all of them - input validation, the per-class budget
``m_c = max(1, round(rho * n_c))``, splitting by class, deriving one random generator per class from the
seed, mapping local positions back to global indices and checking the result - so that a method only
implements :meth:`Selector._select_class` on the features of one class.
"""

from __future__ import annotations

import abc
import math
import zlib
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from coreset_interp.registry import Registry, constructor_fields

# Rows per chunk when checking finiteness, so that a 1.28M x 2048 ImageNet matrix never needs a
# same-sized boolean temporary.
_FINITE_CHUNK_ROWS = 65_536


def class_budget(n_c: int, ratio: float) -> int:
    """The number of samples a selector keeps from a class of ``n_c`` samples.

    ``m_c = max(1, round(rho * n_c))`` with *round half up*: ``floor(rho * n_c + 0.5)``. Python's ``round``
    rounds half to even (``round(2.5) == 2``, ``round(3.5) == 4``), which would make the budget of a
    class depend on the parity of ``rho * n_c``; half up is what a reader of the paper expects.

    The product is taken on the ratio's shortest decimal form (``repr``), exactly, with fractions: in
    binary floating point ``0.35 * 90 == 31.499999999999996``, which would round down to 31 instead of 32
    (75 such (percent, n_c) pairs exist for n_c < 1400). Ratios are written as decimals in configs, so the
    decimal is the intended value.

    Args:
        n_c: number of samples in the class (>= 1).
        ratio: selection ratio rho in (0, 1].

    Returns:
        The budget m_c, an int in [1, n_c].

    Raises:
        ValueError: if ``n_c < 1`` or ``ratio`` is outside (0, 1].
    """
    if n_c < 1:
        raise ValueError(f"a class needs at least one sample, got n_c={n_c}")
    _check_ratio(ratio)
    exact = Fraction(repr(float(ratio))) * n_c + Fraction(1, 2)
    return int(min(n_c, max(1, math.floor(exact))))


def _check_ratio(ratio: float) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float | np.integer | np.floating):
        raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
    if not (0.0 < float(ratio) <= 1.0):
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")


def class_seed_sequence(seed: int, label: Any) -> np.random.SeedSequence:
    """The seed sequence of one class, a pure function of ``(seed, label)``.

    Deriving it from the label (not from the class's position in the sorted label list) keeps a class's
    random choices unchanged when other classes are added or removed.

    Args:
        seed: the job's non-negative integer seed.
        label: the class label (an integer, or anything with a stable ``str``).

    Returns:
        A :class:`numpy.random.SeedSequence`.
    """
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, int | np.integer) and not isinstance(label, bool):
        # SeedSequence takes non-negative entropy only; the tag keeps 3 and -3 apart.
        key = [0, int(label)] if label >= 0 else [1, -int(label)]
    else:
        key = [2, zlib.crc32(str(label).encode("utf-8"))]
    return np.random.SeedSequence([int(seed), *key])


class Selector(abc.ABC):
    """Base class of the coreset selectors: validates, splits per class, delegates, checks.

    Subclasses register with ``@SELECTORS.register`` (which sets :attr:`name` to the module's name) and
    implement :meth:`_select_class`; their constructor takes explicit keyword arguments (the YAML's flat
    fields), each kept as an attribute of the same name so that :meth:`params` can report it.
    """

    #: Registry name, equal to the YAML file name in ``conf/selector/`` (set by ``SELECTORS.register``).
    name: ClassVar[str] = "base"
    #: Bump when the selection algorithm changes: it is part of every coreset's cache key, so old
    #: coresets are not reused (``tests/test_method_versions.py`` notices a code change without a bump).
    version: ClassVar[int] = 1

    def params(self) -> dict[str, Any]:
        """Every constructor field with its value, defaults included (part of the coreset's cache key).

        Returns:
            A JSON-serialisable dict; empty for selectors without hyperparameters.
        """
        return {f: getattr(self, f) for f in constructor_fields(type(self))}

    def key(self) -> dict[str, Any]:
        """What identifies this selector's coresets in a cache key: name, code version and parameters.

        Returns:
            ``{"selector": name, "version": version, "params": params()}``.
        """
        return {"selector": self.name, "version": self.version, "params": self.params()}

    def source_model(self) -> dict[str, Any] | None:
        """The model whose train GAP features the selection reads, when it is not the job's own model.

        Returns:
            A model config node for the pipeline to load (the transfer selector's source), or None for the
            job's model (the default).
        """
        return None

    def budget(self, n_c: int, ratio: float) -> int:
        """The number of samples to keep from a class of ``n_c`` samples (see :func:`class_budget`).

        Args:
            n_c: class size.
            ratio: selection ratio in (0, 1].

        Returns:
            m_c.
        """
        return class_budget(n_c, ratio)

    def select(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        ratio: float,
        seed: int = 0,
        *,
        classes: Sequence[Any] | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Select a class-balanced coreset.

        Args:
            features: (n, d) array of per-sample features (GAP vectors); finite values only.
            labels: (n,) array of class labels.
            ratio: selection ratio rho in (0, 1]; class c keeps ``class_budget(n_c, rho)`` samples.
            seed: non-negative integer; class c draws from a generator seeded by ``(seed, c)``.
            classes: optional list of the classes that must be present; a class of this list without
                any sample raises ``ValueError`` (an empty class), and so does a label outside it.
            progress: show a progress bar over classes (useful for ImageNet's 1000 classes).

        Returns:
            Sorted, unique int64 indices into ``features``.

        Raises:
            ValueError: for a ratio outside (0, 1], features that are not 2-D, labels that are not 1-D or
                have a different length, NaN or infinite features, empty input, an empty class, or a
                negative / non-integer seed.
        """
        features, labels = self._validate(features, labels, ratio, seed)
        groups = _split_by_class(labels)
        if classes is not None:
            _check_classes(groups, classes)

        chosen: list[np.ndarray] = []
        for label, idx in tqdm(groups, desc=f"select[{self.name}]", disable=not progress, leave=False):
            m = self.budget(len(idx), ratio)
            rng = np.random.default_rng(class_seed_sequence(seed, label))
            feats_c = np.asarray(features[idx], dtype=np.float64)
            local = self._select_class(feats_c, m, rng)
            chosen.append(idx[_check_local(local, m, len(idx), self.name, label)])
        out = np.sort(np.concatenate(chosen)).astype(np.int64, copy=False)
        return out

    @abc.abstractmethod
    def _select_class(self, feats_c: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
        """Choose ``m`` samples of one class.

        Args:
            feats_c: (n_c, d) float64 features of the class, in ascending global index order.
            m: the budget, 1 <= m <= n_c.
            rng: the class's own generator; the only allowed source of randomness.

        Returns:
            ``m`` distinct local positions in [0, n_c), any order.
        """

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    @staticmethod
    def _validate(
        features: np.ndarray, labels: np.ndarray, ratio: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        _check_ratio(ratio)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        features = np.asarray(features)
        labels = np.asarray(labels)
        if features.ndim != 2:
            raise ValueError(f"features must be a 2-D (n, d) array, got shape {features.shape}")
        if labels.ndim != 1:
            raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
        if features.shape[0] != labels.shape[0]:
            raise ValueError(
                f"features and labels have different lengths: {features.shape[0]} != {labels.shape[0]}"
            )
        if features.shape[0] == 0 or features.shape[1] == 0:
            raise ValueError(f"features are empty (shape {features.shape})")
        if not (np.issubdtype(features.dtype, np.number) and not np.iscomplexobj(features)):
            raise ValueError(f"features must be real numbers, got dtype {features.dtype}")
        for start in range(0, features.shape[0], _FINITE_CHUNK_ROWS):
            block = features[start : start + _FINITE_CHUNK_ROWS]
            if not np.isfinite(block).all():
                bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                raise ValueError(f"features contain NaN or infinite values (first at row {bad})")
        return features, labels


def _split_by_class(labels: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """Group sample indices by label; indices within a class stay ascending (stable sort)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    uniq, starts = np.unique(sorted_labels, return_index=True)
    bounds = [*starts.tolist(), len(labels)]
    return [(uniq[i], order[bounds[i] : bounds[i + 1]]) for i in range(len(uniq))]


def _check_classes(groups: list[tuple[Any, np.ndarray]], classes: Sequence[Any]) -> None:
    present = {g[0].item() if isinstance(g[0], np.generic) else g[0] for g in groups}
    expected = {c.item() if isinstance(c, np.generic) else c for c in classes}
    empty = sorted(expected - present, key=str)
    if empty:
        raise ValueError(f"empty class: no samples for class(es) {empty}")
    unknown = sorted(present - expected, key=str)
    if unknown:
        raise ValueError(f"labels outside the given classes: {unknown}")


def _check_local(local: np.ndarray, m: int, n_c: int, name: str, label: Any) -> np.ndarray:
    """A subclass's answer must be exactly m distinct positions; anything else is a bug, not data."""
    local = np.asarray(local)
    if local.ndim != 1 or not np.issubdtype(local.dtype, np.integer):
        raise RuntimeError(f"{name}: class {label!r}: expected a 1-D integer array, got {local!r}")
    if len(local) != m or len(np.unique(local)) != m:
        raise RuntimeError(
            f"{name}: class {label!r}: expected {m} distinct positions, got {len(local)} "
            f"({len(np.unique(local))} distinct)"
        )
    if local.min() < 0 or local.max() >= n_c:
        raise RuntimeError(f"{name}: class {label!r}: positions out of range [0, {n_c})")
    return local


SELECTORS: Registry[Selector] = Registry[Selector]("selector")
