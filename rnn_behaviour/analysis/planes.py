"""Plane alignment of the items' report-feature representations (Panichello & Buschman 2021).

For item i at time t, the mean population response to each of its B report-feature bins
(averaged over the other item and over samples) is a set of B points in R^n. Their best-fitting
plane (the first two principal components of the centred bin means) is item i's *plane*.
Panichello & Buschman found the two items' colour planes orthogonal while both are memorised
and aligned once one of them is cued. We measure the alignment by the cosine between the planes:

  'pca3' (default, P&B's construction): centre each item's B bin means on its own centroid
    (only the planes' orientations matter), take the top three principal components of the 2B
    centred points together, fit a plane to each item's points in that 3-D space and return
    |cos| of the angle between the two planes' normals. A normal's sign is arbitrary, hence the
    absolute value: 0 is orthogonal, 1 is parallel.
  'principal': |det(B_1^T B_2)| for orthonormal plane bases B_i (n, 2) in the full space, the
    product of the cosines of the two principal angles between the planes. When the planes
    span three dimensions together, it equals the 'pca3' cosine exactly (one principal angle is
    0, the other is the angle between the normals); it needs no 3-D projection.

Bin means are least-squares marginal means of an additive model by default
(`additive_bin_means`), not raw averages, because on the design grid items never share a bin
and raw averages leak one item's code into the other's plane. Which displays feed each item's
plane is the caller's choice (`masks`): P&B's cued-item comparison uses, for item i, the
displays in which item i is cued (`displays_grid.cued_masks`). The alignment's time course is
summarised by least-squares sigmoid and flat-line fits around the cue (`fit_around_cue`).

Shapes: trajectories are time-major (T, K, S, n): time, displays, samples, units.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

METHODS = ('pca3', 'principal')
RESAMPLINGS = ('samples', 'displays', 'both')


def _with_sample_axis(states):
  """(T, K, n) -> (T, K, 1, n); (T, K, S, n) unchanged."""
  states = jnp.asarray(states)
  if states.ndim == 3:
    return states[:, :, None, :]
  if states.ndim != 4:
    raise ValueError(f'states must be (T, K, S, n) or (T, K, n), got {states.shape}')
  return states


def bin_means(states, bins, num_bins: int, weights=None):
  """Mean response per report-feature bin of one item, averaged over everything else.

  Args:
    states: (T, K, S, n) or (T, K, n) trajectories.
    bins: (K,) int, the item's report bin in each display.
    num_bins: B.
    weights: optional non-negative weights broadcastable to (K, S), e.g. a (K, 1) mask of the
      displays to use or bootstrap counts. Default: all ones.

  Returns:
    (T, B, n) weighted means; a bin with zero total weight is NaN.
  """
  states = _with_sample_axis(states)
  _, num_displays, num_samples, _ = states.shape
  weights = jnp.ones((num_displays, num_samples)) if weights is None else weights
  weights = jnp.broadcast_to(jnp.asarray(weights, states.dtype), (num_displays, num_samples))
  onehot = jax.nn.one_hot(bins, num_bins, dtype=states.dtype)            # (K, B)
  # Reduce the sample axis first: it is the largest and the bin one-hot does not depend on it.
  per_display = jnp.einsum('tksn,ks->tkn', states, weights)
  sums = jnp.einsum('tkn,kb->tbn', per_display, onehot)
  totals = weights.sum(axis=1) @ onehot                                   # (B,)
  return sums / totals[None, :, None]


class Plane(NamedTuple):
  """Best-fitting plane of B points. centre (..., n); basis (..., n, 2) orthonormal columns;
  explained (...,): the fraction of the points' variance about the centre inside the plane."""
  centre: jnp.ndarray
  basis: jnp.ndarray
  explained: jnp.ndarray


def fit_plane(points) -> Plane:
  """Plane through the centroid of points (..., B, n), B >= 3, along their top two PCs."""
  centre = points.mean(axis=-2)
  centred = points - centre[..., None, :]
  _, sing, vt = jnp.linalg.svd(centred, full_matrices=False)
  power = sing**2
  explained = power[..., :2].sum(-1) / jnp.maximum(power.sum(-1), 1e-30)
  return Plane(centre=centre, basis=jnp.swapaxes(vt[..., :2, :], -1, -2), explained=explained)


def _cosine_pca3(means_a, means_b):
  """P&B's cosine for one pair of (B, n) bin-mean sets."""
  centred_a = means_a - means_a.mean(0)
  centred_b = means_b - means_b.mean(0)
  _, _, vt = jnp.linalg.svd(jnp.concatenate([centred_a, centred_b]), full_matrices=False)
  space = vt[:3].T                                                       # (n, 3)
  # In 3-D the normal of the best-fitting plane is the least principal direction.
  normal_a = jnp.linalg.svd(centred_a @ space, full_matrices=True)[2][2]
  normal_b = jnp.linalg.svd(centred_b @ space, full_matrices=True)[2][2]
  return jnp.abs(normal_a @ normal_b)


def _cosine_principal(means_a, means_b):
  basis_a = fit_plane(means_a).basis
  basis_b = fit_plane(means_b).basis
  return jnp.abs(jnp.linalg.det(basis_a.T @ basis_b))


def plane_cosine(means_a, means_b, method: str = 'pca3'):
  """Cosine between the planes of two sets of bin means (see the module docstring).

  Args:
    means_a, means_b: (..., B, n) bin means of item a and item b; B >= 3, n >= 3.
    method: 'pca3' or 'principal'.

  Returns:
    (...,) cosines in [0, 1]: 0 orthogonal, 1 aligned.
  """
  if method not in METHODS:
    raise ValueError(f'method must be one of {METHODS}, got {method!r}')
  fn = _cosine_pca3 if method == 'pca3' else _cosine_principal
  batch = means_a.shape[:-2]
  flat_a = means_a.reshape((-1,) + means_a.shape[-2:])
  flat_b = means_b.reshape((-1,) + means_b.shape[-2:])
  return jax.vmap(fn)(flat_a, flat_b).reshape(batch)


def additive_bin_means(states, bins, num_bins: int, weights=None):
  """Each item's bin means adjusted for the other items: least-squares (marginal) means.

  Fits, at every time step, the additive model x = mu + sum_i A_i[b_i] + noise by weighted
  least squares and returns mu + A_i[b] - mean_b A_i[b] for each item i. Why not raw averages:
  when items never share a bin (the design grid), the raw mean of item 1's bin b averages item
  2 over the *other* bins only, so it carries -1/(B-1) of item 2's code for b, and each item's
  plane leaks into the other's (with B = 8, two orthogonal planes then read as cos ~ 0.08 by
  'principal' and ~ 0.28 by 'pca3'). The additive fit weights the other item's bins equally
  instead, which is what "averaged over the other item" means in a balanced design, and equals
  the raw average when the design is a full factorial.

  Args:
    states: (T, K, S, n) or (T, K, n) trajectories.
    bins: (K, N) int report bins of the N items.
    num_bins: B.
    weights: optional non-negative weights broadcastable to (K, S).

  Returns:
    (N, T, B, n); bins of an item with zero total weight are NaN.
  """
  states = _with_sample_axis(states)
  _, num_displays, num_samples, _ = states.shape
  num_items = bins.shape[1]
  weights = jnp.ones((num_displays, num_samples)) if weights is None else weights
  weights = jnp.broadcast_to(jnp.asarray(weights, states.dtype), (num_displays, num_samples))
  display_weight = weights.sum(axis=1)                                     # (K,)
  display_mean = (jnp.einsum('tksn,ks->tkn', states, weights)
                  / jnp.maximum(display_weight, 1e-30)[None, :, None])
  onehots = jax.nn.one_hot(bins, num_bins, dtype=states.dtype)             # (K, N, B)
  design = jnp.concatenate(
      [jnp.ones((num_displays, 1), states.dtype), onehots.reshape(num_displays, -1)], axis=1)
  gram = design.T @ (display_weight[:, None] * design)
  # The intercept and each item's level effects share constants, so the Gram matrix is
  # singular; the pseudo-inverse picks one solution, and the centring below removes the rest.
  coefficients = jnp.einsum('pq,kq,k,tkn->tpn', jnp.linalg.pinv(gram, hermitian=True), design,
                            display_weight, display_mean)
  grand = coefficients[:, 0]                                               # (T, n)
  effects = coefficients[:, 1:].reshape(-1, num_items, num_bins, states.shape[-1])
  effects = effects - effects.mean(axis=2, keepdims=True)
  means = grand[:, None, None, :] + effects                                # (T, N, B, n)
  present = jnp.einsum('k,knb->nb', display_weight, onehots) > 0           # (N, B)
  means = jnp.where(present[None, :, :, None], means, jnp.nan)
  return jnp.moveaxis(means, 1, 0)


ESTIMATORS = ('additive', 'average')


def item_bin_means(states, bins, num_bins: int, masks=None, sample_weights=None,
                   estimator: str = 'additive'):
  """Bin means of each of two items, (2, T, B, n).

  Args:
    states: (T, K, S, n) or (T, K, n).
    bins: (K, 2) report bins of the two items.
    num_bins: B.
    masks: optional (2, K) display masks, row i selecting the displays for item i's plane.
      Pass `displays_grid.cued_masks(displays)` for P&B's comparison of the *cued* item's plane
      when item 1 is cued against when item 2 is cued (orthogonal memories before the cue, a
      common response subspace after it). Default: all displays for both items.
    sample_weights: optional (K, S) weights (bootstrap counts).
    estimator: 'additive' (`additive_bin_means`, the default) or 'average' (`bin_means`: the
      raw average over the other item, biased when items never share a bin).
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f'estimator must be one of {ESTIMATORS}, got {estimator!r}')
  states = _with_sample_axis(states)
  num_displays, num_samples = states.shape[1:3]
  masks = jnp.ones((2, num_displays)) if masks is None else jnp.asarray(masks, states.dtype)
  sample_weights = (jnp.ones((num_displays, num_samples)) if sample_weights is None
                    else sample_weights)
  per_item = []
  for i in range(2):
    weights = masks[i][:, None] * sample_weights
    if estimator == 'additive':
      per_item.append(additive_bin_means(states, bins, num_bins, weights)[i])
    else:
      per_item.append(bin_means(states, bins[:, i], num_bins, weights))
  return jnp.stack(per_item)


@functools.partial(jax.jit, static_argnames=('num_bins', 'method', 'estimator'))
def alignment_time_course(states, bins, num_bins: int, masks=None, method: str = 'pca3',
                          estimator: str = 'additive'):
  """Cosine between the two items' planes at every time step, (T,).

  Args: as `item_bin_means`, plus `method` as `plane_cosine`.
  """
  means = item_bin_means(states, bins, num_bins, masks, estimator=estimator)
  return plane_cosine(means[0], means[1], method)


def _resampling_weights(key, num_displays, num_samples, resample):
  """(K, S) bootstrap counts: how often each (display, sample) is drawn."""
  key_samples, key_displays = jax.random.split(key)
  weights = jnp.ones((num_displays, num_samples))
  if resample in ('samples', 'both'):
    # Samples are resampled within each display, so every display (and so every bin) stays.
    draws = jax.random.randint(key_samples, (num_displays, num_samples), 0, num_samples)
    weights = jax.vmap(lambda d: jnp.bincount(d, length=num_samples))(draws).astype(jnp.float32)
  if resample in ('displays', 'both'):
    draws = jax.random.randint(key_displays, (num_displays,), 0, num_displays)
    weights = weights * jnp.bincount(draws, length=num_displays)[:, None]
  return weights


@functools.partial(jax.jit, static_argnames=('num_bins', 'method', 'resample', 'estimator'))
def _bootstrap_samples(keys, states, bins, masks, num_bins, method, resample, estimator):
  """(num_bootstrap, T) cosines, one row per key."""
  num_displays, num_samples = states.shape[1:3]

  def one(k):
    weights = _resampling_weights(k, num_displays, num_samples, resample)
    means = item_bin_means(states, bins, num_bins, masks, weights, estimator)
    return plane_cosine(means[0], means[1], method)

  # lax.map keeps one replicate's bin sums in memory at a time, not num_bootstrap of them.
  return jax.lax.map(one, keys)


class AlignmentBootstrap(NamedTuple):
  """cosine (T,): the estimate on all data; band (2, T): lower and upper percentiles of the
  bootstrap; samples (num_bootstrap, T)."""
  cosine: jnp.ndarray
  band: jnp.ndarray
  samples: jnp.ndarray


def bootstrap_alignment(key, states, bins, num_bins: int, masks=None, method: str = 'pca3',
                        num_bootstrap: int = 100, resample: str = 'samples',
                        level: float = 0.95, estimator: str = 'additive'
                        ) -> AlignmentBootstrap:
  """The alignment time course with a percentile bootstrap band.

  Args:
    key: PRNG key.
    states: (T, K, S, n) trajectories.
    bins, num_bins, masks, method, estimator: as `alignment_time_course`.
    num_bootstrap: number of bootstrap replicates.
    resample: 'samples' (the network's trials within each display: its noise), 'displays'
      (displays with replacement; a bin can end up empty, giving a NaN that the band ignores)
      or 'both'. With S = 1 only 'displays' varies anything.
    level: coverage of the band.
  """
  if resample not in RESAMPLINGS:
    raise ValueError(f'resample must be one of {RESAMPLINGS}, got {resample!r}')
  states = _with_sample_axis(states)
  num_displays, num_samples = states.shape[1:3]
  cosine = alignment_time_course(states, bins, num_bins, masks, method, estimator)
  samples = _bootstrap_samples(jax.random.split(key, num_bootstrap), states, bins, masks,
                               num_bins, method, resample, estimator)
  tail = 50.0 * (1.0 - level)
  band = jnp.asarray(np.nanpercentile(np.asarray(samples), [tail, 100.0 - tail], axis=0))
  return AlignmentBootstrap(cosine=cosine, band=band, samples=samples)


# ----------------------------------------------------------------------------- time-course fits


def sigmoid_curve(times, low, high, midpoint, width):
  """low + (high - low) / (1 + exp(-(t - midpoint) / width)); numpy, any shapes."""
  return low + (high - low) * 0.5 * (1.0 + np.tanh(0.5 * (times - midpoint) / width))


def fit_sigmoid_vs_flat(times, values, min_width: float | None = None) -> dict:
  """Least-squares fits of a sigmoid and of a flat line to a time course.

  The sigmoid `sigmoid_curve` (4 parameters) contains the flat line (1 parameter) as a limit, so
  its error is never larger; the choice between them is by BIC,
  n log(MSE) + k log(n), which a step in the data wins and a flat noisy series loses.

  Args:
    times: (n,) time points (e.g. steps relative to the cue onset).
    values: (n,) the time course; NaNs are dropped.
    min_width: smallest allowed sigmoid width; default a tenth of the smallest time step, so a
      step between two samples is representable without the fit running off to zero width.

  Returns:
    dict with sigmoid_mse, flat_mse, sigmoid_params {low, high, midpoint, width}, flat_level,
    sigmoid_bic, flat_bic, sigmoid_preferred (bool), num_points.
  """
  times = np.asarray(times, np.float64)
  values = np.asarray(values, np.float64)
  keep = np.isfinite(values)
  times, values = times[keep], values[keep]
  num = times.size
  if num < 5:
    raise ValueError(f'need at least 5 finite points to fit a sigmoid, got {num}')
  spacing = np.min(np.diff(np.unique(times))) if num > 1 else 1.0
  min_width = 0.1 * spacing if min_width is None else min_width
  span = times.max() - times.min()

  flat_level = values.mean()
  flat_mse = np.mean((values - flat_level)**2)

  def residuals(p):
    return sigmoid_curve(times, *p) - values

  lo_bounds = [-np.inf, -np.inf, times.min() - span, min_width]
  hi_bounds = [np.inf, np.inf, times.max() + span, max(10.0 * span, 2 * min_width)]
  # Several starts: a sigmoid's error surface in (midpoint, width) has flat plateaus.
  # A start with low = high is the flat fit itself, so the sigmoid's error can only be lower.
  best = None
  order = np.argsort(times)
  quarter = max(num // 4, 1)
  head, tail = values[order][:quarter].mean(), values[order][-quarter:].mean()
  starts = [(flat_level, flat_level, times.mean(), 0.3 * span)]
  starts += [(head, tail, midpoint, width)
             for midpoint in np.linspace(times.min(), times.max(), 7)
             for width in (spacing, 0.1 * span, 0.3 * span)]
  for start in starts:
    start = np.clip(start, np.add(lo_bounds, 1e-9), np.subtract(hi_bounds, 1e-9))
    fit = optimize.least_squares(residuals, start, bounds=(lo_bounds, hi_bounds))
    if best is None or fit.cost < best.cost:
      best = fit
  params = best.x
  sigmoid_mse = float(np.mean(residuals(params)**2))

  def bic(mse, k):
    return float(num * np.log(max(mse, 1e-12)) + k * np.log(num))

  sigmoid_bic, flat_bic = bic(sigmoid_mse, 4), bic(flat_mse, 1)
  return dict(
      sigmoid_mse=sigmoid_mse, flat_mse=float(flat_mse),
      sigmoid_params=dict(low=float(params[0]), high=float(params[1]),
                          midpoint=float(params[2]), width=float(params[3])),
      flat_level=float(flat_level), sigmoid_bic=sigmoid_bic, flat_bic=flat_bic,
      sigmoid_preferred=bool(sigmoid_bic < flat_bic), num_points=int(num))


def fit_around_cue(values, cue_onset: int, before: int | None = None,
                   after: int | None = None) -> dict:
  """`fit_sigmoid_vs_flat` on the steps [cue_onset - before, cue_onset + after) of a (T,) series.

  Times are steps relative to the cue onset (0 = first cue step). Defaults: the whole series.
  The result also holds 'start' and 'stop', the absolute step window used.
  """
  values = np.asarray(values)
  start = 0 if before is None else max(cue_onset - before, 0)
  stop = values.shape[0] if after is None else min(cue_onset + after, values.shape[0])
  result = fit_sigmoid_vs_flat(np.arange(start, stop) - cue_onset, values[start:stop])
  result.update(start=int(start), stop=int(stop))
  return result
