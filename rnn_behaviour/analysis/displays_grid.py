"""A designed grid of two-item displays for looking inside trained networks (issue 5, part 1).

Analyses such as plane alignment need the population response *per report-feature bin of each
item*, averaged over the other item. A random display sample covers the bins unevenly; the grid
here covers them exactly: every ordered pair of distinct report bins (b_1, b_2), each item cued,
with fixed cue features. Feature values are bin centres.

Display order (K = 2 * B * (B - 1)): cued item outermost, then b_1, then b_2, so that
`design_grid(...)[:K // 2]` are the displays with item 0 cued.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import task as task_lib


def bin_edges(num_bins: int) -> np.ndarray:
  """(B + 1,) edges of B equal bins covering [-pi, pi)."""
  return -np.pi + np.arange(num_bins + 1) * (circular.TWO_PI / num_bins)


def bin_centres(num_bins: int) -> np.ndarray:
  """(B,) bin centres -pi + (b + 1/2) 2 pi / B, radians in [-pi, pi)."""
  return -np.pi + (np.arange(num_bins) + 0.5) * (circular.TWO_PI / num_bins)


@functools.partial(jax.jit, static_argnames=('num_bins',))
def angle_bins(angles, num_bins: int):
  """Index of the bin [-pi + b w, -pi + (b + 1) w), w = 2 pi / B, holding each angle.

  Args:
    angles: (...) radians, any range (wrapped first).
    num_bins: B.

  Returns:
    (...) int32 bin indices in [0, B).
  """
  wrapped = circular.wrap(angles)
  index = jnp.floor((wrapped + jnp.pi) * (num_bins / circular.TWO_PI)).astype(jnp.int32)
  # Rounding can push an angle just below pi into bin B; it belongs to the last bin.
  return jnp.clip(index, 0, num_bins - 1)


def design_grid(num_bins: int, cue_features: Sequence[float] = (0.0, np.pi / 4),
                allow_same_bin: bool = False) -> task_lib.Displays:
  """Two-item displays: every pair of report bins (bin centres), each item cued.

  Args:
    num_bins: B, the number of report-feature bins.
    cue_features: (c_1, c_2), the items' cue features (radians), the same in every display.
      Fixing them keeps the cue-distance-dependent swap rate constant across the grid, so that
      bin means differ only through the report features. The default puts the items on the
      default 8-location grid at its minimum separation (pi/4), where swaps are most frequent,
      which gives swap decoding the most positive trials.
    allow_same_bin: include pairs with b_1 == b_2 (two items of the same colour). Off by
      default: the task never shows identical report features.

  Returns:
    Displays with cue (K, 2), report (K, 2), cued (K,), K = 2 B (B - 1) (or 2 B^2).
  """
  if len(cue_features) != 2:
    raise ValueError(f'design_grid makes two-item displays; got {len(cue_features)} cues')
  centres = bin_centres(num_bins)
  b1, b2 = np.meshgrid(np.arange(num_bins), np.arange(num_bins), indexing='ij')
  keep = np.ones_like(b1, bool) if allow_same_bin else b1 != b2
  pairs = np.stack([b1[keep], b2[keep]], axis=-1)            # (P, 2), b_1 major.
  num_pairs = pairs.shape[0]
  report = np.concatenate([centres[pairs]] * 2)                # (2P, 2)
  cued = np.repeat(np.arange(2), num_pairs)
  cue = np.broadcast_to(np.asarray(cue_features, np.float64), report.shape)
  return task_lib.Displays(
      cue=jnp.asarray(circular.wrap(cue), jnp.float32),
      report=jnp.asarray(report, jnp.float32),
      cued=jnp.asarray(cued, jnp.int32))


def item_bins(displays: task_lib.Displays, num_bins: int):
  """Report-feature bin of every item, (K, N) int32 (the analyses' labels)."""
  return angle_bins(displays.report, num_bins)


def cued_masks(displays: task_lib.Displays):
  """(N, K) bool: row i marks the displays in which item i is cued."""
  return jnp.arange(displays.num_items)[:, None] == displays.cued[None, :]
