"""The paper's mechanism analyses (METHOD sec. 8), measured the way its authors measured them.

Plane alignment (Panichello & Buschman 2021, as Radmard, Bays & Lengyel compute it). One *cue
pair* (the two items' cue features, fixed) at a time, many trials of it: every pair of report
features on a grid, each item cued, the network's own noise on. At every time step t from the
start of the delay to the end of the response:

  1. project the states onto the null space of the readout D (the readout plane carries the
     response itself, not the memory), x -> B^T x with B (n, n - 2) an orthonormal basis;
  2. reduce them to 3 dimensions by PCA over all of the pair's trials (centred across trials);
  3. keep the trials that end *correct* (response nearest the cued item), split them by which
     item was cued, and bin each half by the *reported* colour (16 equal bins on the circle);
  4. fit a plane to each half's bin means (through their centroid; the normal is the direction
     of least variance in the 3-D space; empty bins are left out);
  5. the alignment is |cos| of the angle between the two planes' normals: 0 orthogonal, 1
     aligned.

The pair's time courses are averaged over cue pairs, with a percentile bootstrap band over pairs.
Differences from the authors' notebook, on purpose: their per-trial subtraction of the mean over
units before the PCA is not done (PCA centres across trials, which is what a PCA needs), and an
empty colour bin is left out rather than entering the plane fit as a point at the origin.

The prediction: the nearer the two cue features, the more aligned the colour planes already are
before the cue; measured as the slope and the rank correlation of the pair's alignment at the
last pre-cue step against its cue distance, with bootstrap intervals over pairs.

Where a swap is decided: separability of swap and correct trials of the same display at every
step, response epoch included, in the readout's null space (the readout itself shows the
answer once it is given), by the within-display-centred decoder of `decoding.swap_auc_over_time`;
and the trials' projection on the most discriminating null-space direction.

Shapes: trajectories are time-major (T, K, S, n): time, displays, samples, units.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from rnn_behaviour import circular
from rnn_behaviour import task as task_lib
from rnn_behaviour.analysis import displays_grid

NUM_COMPONENTS = 3


# ------------------------------------------------------------------------------- displays


def pair_distances(min_separation: float, step: float, cue_grid: int = 0) -> np.ndarray:
  """Cue distances of the analysed pairs, radians in [min_separation, pi].

  On a grid of G cue values: every multiple of 2 pi / G from min_separation up to pi. On a
  continuum: min_separation, min_separation + step, ... below pi (the authors' 45 to 165
  degrees in steps of 15 for min_separation pi/4 and step pi/12).
  """
  if cue_grid:
    unit = circular.TWO_PI / cue_grid
    first = max(int(np.ceil(min_separation / unit - 1e-9)), 1)
    return np.arange(first, cue_grid // 2 + 1) * unit
  return np.arange(min_separation, np.pi - 1e-6, step)


def cue_pairs(distances, num_rotations: int) -> tuple[np.ndarray, np.ndarray]:
  """(P, 2) cue features and (P,) distances: every distance at `num_rotations` evenly spaced
  positions of the first item (the second item at first + distance)."""
  first = np.arange(num_rotations) * (circular.TWO_PI / num_rotations)
  pairs = [(a, a + d) for d in distances for a in first]
  dist = np.repeat(np.asarray(distances, float), num_rotations)
  return np.asarray(circular.wrap(np.asarray(pairs))), dist


def pair_displays(cue_features, num_report_values: int,
                  min_separation_report: float) -> task_lib.Displays:
  """Every ordered pair of report values on a grid of R (at least min_separation_report apart),
  each item cued, with the two cue features fixed: 2 x (number of report pairs) displays, item 0
  cued in the first half."""
  values = circular.wrap(np.arange(num_report_values) * (circular.TWO_PI / num_report_values))
  a, b = np.meshgrid(values, values, indexing='ij')
  apart = np.abs(circular.wrap(a - b)) >= min_separation_report - 1e-6
  report = np.stack([a[apart], b[apart]], axis=-1)
  report = np.concatenate([report, report])
  cued = np.repeat(np.arange(2), report.shape[0] // 2)
  cue = np.broadcast_to(np.asarray(cue_features, float), report.shape)
  return task_lib.Displays(cue=jnp.asarray(cue, jnp.float32),
                           report=jnp.asarray(report, jnp.float32),
                           cued=jnp.asarray(cued, jnp.int32))


# ------------------------------------------------------------------------- plane alignment


def null_space_basis(readout):
  """(n, n - 2) orthonormal basis of the null space of the (2, n) readout."""
  _, _, vt = jnp.linalg.svd(jnp.asarray(readout), full_matrices=True)
  return vt[readout.shape[0]:].T


def top_components(x, num_components: int = NUM_COMPONENTS):
  """x (M, d) centred across rows and projected on its top principal axes: (M, c)."""
  centred = x - x.mean(axis=0)
  _, vectors = jnp.linalg.eigh(centred.T @ centred)
  return centred @ vectors[:, ::-1][:, :num_components]


def weighted_bin_means(points, bins, weights, num_bins: int):
  """(B, c) means of points (M, c) per bin (M,) over trials with weight (M,); (B,) counts."""
  onehot = jax.nn.one_hot(bins, num_bins, dtype=points.dtype) * weights[:, None]
  counts = onehot.sum(axis=0)
  return onehot.T @ points / jnp.maximum(counts, 1e-30)[:, None], counts


def plane_normal(points, present):
  """Unit normal of the plane best fitting the rows of points (B, 3) where present (B,) holds:
  the direction of least variance about their centroid. NaN with fewer than 3 points."""
  weight = present.astype(points.dtype)
  centre = weight @ points / jnp.maximum(weight.sum(), 1.0)
  centred = (points - centre) * weight[:, None]
  normal = jnp.linalg.svd(centred, full_matrices=True)[2][-1]
  return jnp.where(weight.sum() >= 3, normal, jnp.nan)


def _alignment_at(x, cued, reported_bins, correct, num_bins):
  """|cos| between the cued-item planes of one time step's null-space states x (M, d)."""
  z = top_components(x)
  normals = []
  for item in (0, 1):
    weights = (correct & (cued == item)).astype(z.dtype)
    means, counts = weighted_bin_means(z, reported_bins, weights, num_bins)
    normals.append(plane_normal(means, counts > 0))
  return jnp.abs(normals[0] @ normals[1])


@functools.partial(jax.jit, static_argnames=('num_bins',))
def pair_alignment(states, readout, cued, reported, correct, num_bins: int = 16):
  """The paper's plane alignment of one cue pair at every time step.

  Args:
    states: (T, K, S, n) trajectories of the pair's displays (or (T, M, n) trials).
    readout: (2, n) readout D; states are projected on its null space first.
    cued: (K,) (or (M,)) index of the cued item, 0 or 1.
    reported: (K, S) (or (M,)) response angles, radians.
    correct: (K, S) (or (M,)) bool, the response nearest the cued item.
    num_bins: reported-colour bins.

  Returns:
    (T,) |cos| between the planes of the item-0-cued and item-1-cued correct trials.
  """
  num_steps, units = states.shape[0], states.shape[-1]
  if states.ndim == 4:
    cued = jnp.broadcast_to(cued[:, None], states.shape[1:3])
  x = states.reshape(num_steps, -1, units) @ null_space_basis(readout)
  bins = displays_grid.angle_bins(jnp.reshape(reported, -1), num_bins)
  return jax.vmap(lambda xt: _alignment_at(xt, jnp.reshape(cued, -1), bins,
                                           jnp.reshape(correct, -1), num_bins))(x)


class PairAverage(NamedTuple):
  """mean (T,) over pairs; band (2, T): bootstrap percentiles over pairs; num_pairs (T,)."""
  mean: np.ndarray
  band: np.ndarray
  num_pairs: np.ndarray


def average_over_pairs(per_pair, seed: int = 0, num_bootstrap: int = 1000,
                       level: float = 0.95) -> PairAverage:
  """Mean over cue pairs (rows of (P, T); NaNs ignored) with a bootstrap band over pairs."""
  per_pair = np.asarray(per_pair, float)
  rng = np.random.default_rng(seed)
  with np.errstate(all='ignore'):
    import warnings  # pylint: disable=g-import-not-at-top
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', RuntimeWarning)
      mean = np.nanmean(per_pair, axis=0)
      draws = rng.integers(0, per_pair.shape[0], (num_bootstrap, per_pair.shape[0]))
      replicates = np.nanmean(per_pair[draws], axis=1)
      tail = 50.0 * (1.0 - level)
      band = np.nanpercentile(replicates, [tail, 100.0 - tail], axis=0)
  return PairAverage(mean=mean, band=band, num_pairs=np.isfinite(per_pair).sum(axis=0))


# ----------------------------------------------------------------------------- prediction


def precue_prediction(alignment, distance, seed: int = 0, num_bootstrap: int = 1000,
                      level: float = 0.95) -> dict:
  """The paper's prediction, as numbers: pre-cue alignment against cue distance over pairs.

  Args:
    alignment: (P,) each pair's alignment at the last pre-cue step.
    distance: (P,) the pair's cue distance, radians.

  Returns:
    dict with slope (|cos| per radian, least squares), spearman (rank correlation), their
    bootstrap intervals over pairs (slope_interval, spearman_interval), the mean alignment per
    distance (distances, means) and num_pairs. The prediction holds when the slope is
    negative with an interval below zero.
  """
  alignment, distance = np.asarray(alignment, float), np.asarray(distance, float)
  keep = np.isfinite(alignment)
  alignment, distance = alignment[keep], distance[keep]
  levels = np.unique(distance)
  result = dict(num_pairs=int(alignment.size), distances=levels.tolist(),
                means=[float(alignment[distance == d].mean()) for d in levels])
  if alignment.size < 3 or levels.size < 2:
    return dict(result, slope=float('nan'), spearman=float('nan'),
                slope_interval=[float('nan')] * 2, spearman_interval=[float('nan')] * 2)

  def statistics(a, d):
    if np.unique(d).size < 2:
      return np.nan, np.nan
    rho = stats.spearmanr(d, a).statistic if np.ptp(a) > 0 else np.nan
    return np.polyfit(d, a, 1)[0], rho

  slope, rho = statistics(alignment, distance)
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, alignment.size, (num_bootstrap, alignment.size))
  boot = np.array([statistics(alignment[i], distance[i]) for i in draws])
  tail = 50.0 * (1.0 - level)
  intervals = np.nanpercentile(boot, [tail, 100.0 - tail], axis=0)
  return dict(result, slope=float(slope), spearman=float(rho),
              slope_interval=intervals[:, 0].tolist(), spearman_interval=intervals[:, 1].tolist())


# ------------------------------------------------------------------------ swap decision


def project_null(states, readout):
  """(T, K, S, n) -> (T, K, S, n - 2): coordinates in the readout's null space."""
  return jnp.asarray(states) @ null_space_basis(readout)


def discriminating_direction(states, swap):
  """Unit direction separating swap from correct trials at one step, within displays.

  Args:
    states: (K, S, d) states of one time step.
    swap: (K, S) bool labels.

  Returns:
    (d,) the normalised difference of the class means of the display-centred states, each
    display weighted by how balanced its labels are (a display without both kinds carries no
    information about the difference).
  """
  centred = states - states.mean(axis=1, keepdims=True)
  swap = jnp.asarray(swap, states.dtype)
  num_swap, num_correct = swap.sum(1), (1.0 - swap).sum(1)
  mean_swap = jnp.einsum('ks,ksd->kd', swap, centred) / jnp.maximum(num_swap, 1)[:, None]
  mean_correct = jnp.einsum('ks,ksd->kd', 1.0 - swap, centred) / jnp.maximum(num_correct,
                                                                              1)[:, None]
  weight = num_swap * num_correct / jnp.maximum(num_swap + num_correct, 1)
  difference = weight @ (mean_swap - mean_correct)
  return difference / jnp.maximum(jnp.linalg.norm(difference), 1e-30)


def projections(states, direction):
  """(T, K, S) display-centred projections of (T, K, S, d) states on a (d,) direction."""
  centred = states - states.mean(axis=2, keepdims=True)
  return centred @ direction


def decided_from(auc, upper) -> int | None:
  """First step from which the AUC stays above its chance band to the end (None: never)."""
  above = np.asarray(auc, float) > np.asarray(upper, float)
  if not above.size or not above[-1]:
    return None
  below = np.flatnonzero(~above)
  return int(below[-1] + 1) if below.size else 0
