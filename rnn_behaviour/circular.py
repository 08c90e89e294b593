"""Circular helpers shared by every module: wrapping, distances, von Mises codes and statistics,
the von Mises log density, the nearest-item label of a response and the binning of distances.

All angles are radians. Wrapped angles live in [-pi, pi).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import distributions as numpyro_dist

TWO_PI = 2.0 * np.pi


def wrap(angle):
  """Wraps angles to [-pi, pi). Works on numpy and jax arrays alike."""
  return (angle + np.pi) % TWO_PI - np.pi


def circular_distance(a, b):
  """Absolute circular distance |wrap(a - b)|, in [0, pi]."""
  return jnp.abs(wrap(a - b))


def preferred_angles(num_neurons: int) -> jnp.ndarray:
  """Evenly spaced preferred angles of a population code, shape (num_neurons,)."""
  return jnp.arange(num_neurons) * (TWO_PI / num_neurons) - np.pi


def von_mises_code(angle, num_neurons: int, concentration: float):
  """Population code of an angle by von Mises tuning curves.

  r_i(theta) = exp(kappa (cos(theta - theta_i) - 1)), peak 1 at the preferred angle theta_i.

  Args:
    angle: (...) radians.
    num_neurons: M, the number of tuning curves.
    concentration: kappa_in.

  Returns:
    (..., M) firing rates in (0, 1].
  """
  prefs = preferred_angles(num_neurons)
  return jnp.exp(concentration * (jnp.cos(angle[..., None] - prefs) - 1.0))


def log_von_mises_from_cos(cos_delta, kappa):
  """log vM at an angle whose cosine distance to the mean is cos_delta = cos(x - mu).

  kappa cos(x - mu) - log(2 pi I0(kappa)), written as kappa (cos - 1) - log(2 pi i0e(kappa))
  (log I0(k) = k + log i0e(k)), which stays bounded for large kappa. The project's one von
  Mises log density: `log_von_mises` and every model that caches cosines (the mixture's EM)
  call it; it equals NumPyro's `VonMises.log_prob`, which the NumPyro models use as their
  observation distribution (tests/test_circular.py checks all three against scipy).
  """
  return kappa * (cos_delta - 1.0) - jnp.log(TWO_PI * jax.scipy.special.i0e(kappa))


def log_von_mises(x, mu, kappa):
  """log vM(x; mu, kappa) = kappa cos(x - mu) - log(2 pi I0(kappa)), stable for large kappa."""
  return log_von_mises_from_cos(jnp.cos(x - mu), kappa)


def sample_von_mises(key, mu, kappa, shape=None):
  """Draws vM(mu, kappa) samples wrapped to [-pi, pi)."""
  # NumPyro's rejection sampler (Best & Fisher 1979); jax.random has no von Mises.
  shape = jnp.broadcast_shapes(jnp.shape(mu), jnp.shape(kappa)) if shape is None else shape
  noise = numpyro_dist.VonMises(0.0, jnp.broadcast_to(kappa, shape)).sample(key)
  return wrap(mu + noise)


def circular_mean(angles, axis=-1):
  """Direction of the mean resultant vector."""
  return jnp.arctan2(jnp.mean(jnp.sin(angles), axis), jnp.mean(jnp.cos(angles), axis))


def circular_sd(angles, axis=-1):
  """Circular standard deviation sqrt(-2 log R), R the mean resultant length."""
  r = jnp.hypot(jnp.mean(jnp.sin(angles), axis), jnp.mean(jnp.cos(angles), axis))
  return jnp.sqrt(-2.0 * jnp.log(jnp.clip(r, 1e-12, 1.0)))


def kappa_to_sd(kappa):
  """Circular SD of a von Mises with concentration kappa: sqrt(-2 log(I1(k) / I0(k)))."""
  kappa = jnp.asarray(kappa, dtype=jnp.float32)
  ratio = jax.scipy.special.i1e(kappa) / jax.scipy.special.i0e(kappa)
  return jnp.sqrt(-2.0 * jnp.log(jnp.clip(ratio, 1e-30, 1.0)))


def nearest_item(response, items, preferred=None, mask=None):
  """Index of the item whose feature is circularly nearest each response.

  The one nearest-item label of the project (swap rates, swap labels, posterior-predictive
  checks). Tie rule: a response equidistant from several items goes to `preferred` (the cued
  item) when it is among the nearest, else to the lowest-indexed nearest item. So a response
  midway between the target and a non-target is never called a swap. Ties have probability
  zero for continuous responses but not for responses recorded on a grid (Bays 2009 records
  whole degrees; its data give no exact ties, checked in tests/test_circular.py).

  Args:
    response: (...) angles (radians).
    items: (..., N) item features, broadcast against response[..., None].
    preferred: optional (...) int index that wins ties (the cued item).
    mask: optional (..., N) bool, the items that exist (padding slots are never nearest).

  Returns:
    (...) int32 item indices (numpy arrays in, computed in their precision: numpy out).
  """
  xp = np if all(isinstance(a, (np.ndarray, float, int)) for a in (response, items)) else jnp
  distance = xp.abs(wrap(xp.asarray(response)[..., None] - xp.asarray(items)))
  if mask is not None:
    distance = xp.where(mask, distance, xp.inf)
  nearest = xp.argmin(distance, axis=-1).astype(xp.int32)   # argmin: lowest index on ties.
  if preferred is None:
    return nearest
  preferred = xp.broadcast_to(xp.asarray(preferred, xp.int32), nearest.shape)
  at_preferred = xp.take_along_axis(
      xp.broadcast_to(distance, nearest.shape + distance.shape[-1:]), preferred[..., None],
      axis=-1)[..., 0]
  return xp.where(at_preferred <= xp.min(distance, axis=-1), preferred, nearest)


# Distances within this of a bin edge count as on it. Angles stored in float32 (displays,
# network responses) carry round-off of a few 1e-7 rad, so a grid distance that is exactly an
# edge in radians (pi/4, pi/2, pi) can come out a hair below it; 1e-5 rad is far above that
# round-off and far below any bin width in use (>= 0.1 rad).
EDGE_TOLERANCE = 1e-5


def bin_index(values, edges, tolerance: float = EDGE_TOLERANCE):
  """Index of the bin of `edges` holding each value: the project's one binning rule.

  Bins are left-closed, [e_b, e_{b+1}), and the last one is closed on both sides,
  [e_{B-1}, e_B]; a value within `tolerance` of an edge is on that edge (so pi/4 computed in
  float32 lands in the bin that starts at pi/4, and pi in the last bin). Values below e_0 or
  above e_B are clipped into the end bins.

  Args:
    values: (...) numbers (numpy or jax).
    edges: (B + 1,) increasing bin edges.
    tolerance: how near an edge counts as on it.

  Returns:
    (...) int bin indices in [0, B) (numpy in, numpy out).
  """
  edges = np.asarray(edges, np.float64)
  xp = np if isinstance(values, (np.ndarray, float, int)) else jnp
  values = xp.asarray(values)
  gap = xp.abs(values[..., None] - edges)
  on_edge = gap <= tolerance
  snapped = xp.where(on_edge.any(-1), xp.asarray(edges)[xp.argmin(gap, axis=-1)], values)
  index = xp.searchsorted(xp.asarray(edges), snapped, side='right') - 1
  return xp.clip(index, 0, len(edges) - 2)


def distinct_values(values, tolerance: float = EDGE_TOLERANCE, decimals: int = 6):
  """The distinct values of `values` when values within `tolerance` of a neighbour are one.

  Values recorded on a grid come back from files and float32 arithmetic with round-off: a cue
  distance of pi/4 from angles saved to 6 decimals is 0.785398 on one trial and 0.785399 on
  another. Sorted values split into groups wherever the gap to the next exceeds `tolerance`
  (a chain of close values is one group); each group is one value. Bin such values by group,
  not by `bin_index` with edges halfway between them: two values closer than the edge tolerance
  would both snap onto the edge between them and land in one bin.

  Args:
    values: (...) numbers (numpy).
    tolerance: gaps up to this join two values.
    decimals: each group's representative is its mean rounded to this many decimals.

  Returns:
    representatives: (V,) increasing, one per group.
    index: (...) int64, the group of each value, in [0, V).
  """
  values = np.asarray(values, np.float64)
  flat = values.ravel()
  if flat.size == 0:
    return np.zeros(0), np.zeros(values.shape, np.int64)
  order = np.argsort(flat, kind='stable')
  ordered = flat[order]
  group_sorted = np.concatenate([[0], np.cumsum(np.diff(ordered) > tolerance)])
  index = np.empty(flat.size, np.int64)
  index[order] = group_sorted
  sums = np.bincount(group_sorted, weights=ordered)
  counts = np.bincount(group_sorted)
  return np.round(sums / counts, decimals), index.reshape(values.shape)


def grid_separations(grid: int, min_separation: float) -> np.ndarray:
  """Grid steps between two items on a G-point circular grid (the 'authors' plane-alignment
  pairs): from the smallest at least min_separation (and at least 1) to the largest below pi
  (3..11 for G = 24 and pi/4). Empty when none fits."""
  first = max(int(np.ceil(min_separation / (TWO_PI / grid) - 1e-9)), 1)
  return np.arange(first, (grid - 1) // 2 + 1)
