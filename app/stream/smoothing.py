"""One Euro filter (Casiez et al., CHI 2012) over arrays: one independent filter per coordinate.

The cutoff frequency adapts to the speed of the signal: slow motion is smoothed hard (low jitter), fast
motion lightly (low lag). `min_cutoff` (Hz) sets the smoothing at rest, `beta` how fast the cutoff grows with
speed (per pixel/second), `d_cutoff` (Hz) the smoothing of the speed estimate itself.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Exponential smoothing factor of a first-order low-pass filter with `cutoff` Hz over a step of `dt` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Vectorised One Euro filter: `__call__(x, t)` filters every element of x (any fixed shape) at time t (s)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0) -> None:
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float = 0.0

    def reset(self) -> None:
        """Forget the history: the next sample passes through unfiltered."""
        self._x = self._dx = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape or self._dx is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = max(t - self._t, 1e-3)  # equal or reversed timestamps: treat as a 1 ms step
        dx = (x - self._x) / dt
        dx_hat = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        x_hat = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._x, self._dx, self._t = x_hat, dx_hat, t
        return x_hat.copy()


class TrackSmoother:
    """One OneEuroFilter per track id (each filters that track's (K, 2) keypoints); forgets ended tracks."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float) -> None:
        self.params = (min_cutoff, beta, d_cutoff)
        self._filters: dict[int, OneEuroFilter] = {}

    def __len__(self) -> int:
        return len(self._filters)

    def smooth(self, track_id: int, keypoints: np.ndarray, t: float) -> np.ndarray:
        """The filtered keypoints of `track_id` at time t (s)."""
        filt = self._filters.get(track_id)
        if filt is None:
            filt = self._filters[track_id] = OneEuroFilter(*self.params)
        return filt(keypoints, t)

    def retain(self, live_ids: set[int]) -> None:
        """Drop the filters of tracks that no longer exist."""
        for tid in [t for t in self._filters if t not in live_ids]:
            del self._filters[tid]

    def reset(self) -> None:
        self._filters.clear()
