"""Decoding from population states: "setting up for failure" and cross-temporal decoding.

* Swap decoding (METHOD sec. 8): from the state at one time step before the response, predict
  whether the trial will end as a swap, by cross-validated L2-regularised logistic regression,
  scored by the rank AUC of the held-out predictions. A chance band comes from labels shuffled
  within each display, which keeps every display's swap rate (and so any display-driven
  difference) in the null.
* Cross-temporal decoding of an angle: ridge regression from the state at t1 to
  (cos theta, sin theta), applied to held-out trials at t2; the decoded angle is atan2.

All fits are closed form or a few Newton steps, written in JAX, jitted and vmapped over folds
and time steps. Trajectories are time-major (T, K, S, n): time, displays, samples, units.
Cross-validation holds out whole displays (all samples of a display in one fold): per-display
centring and the shared display make samples of one display dependent, and splitting them
across folds would let an overfit decoder score its held-out trials through their
training mates. The swap AUC is computed within each held-out fold and averaged over folds,
since models of different folds have different intercepts that would blur a pooled ranking.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import task as task_lib

# ---------------------------------------------------------------------------------- labels


@jax.jit
def swap_labels(responses, displays: task_lib.Displays):
  """Whether each response is a swap: its nearest item (`task.nearest_item`, the same
  classification as the behavioural evaluation) is a non-target.

  Args:
    responses: (K, S) response angles.
    displays: the K displays.

  Returns:
    (K, S) bool.
  """
  return task_lib.nearest_item(responses, displays) != displays.cued[:, None]


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def display_folds(key, num_displays: int, num_samples: int, num_folds: int):
  """(K, S) fold indices that keep all samples of a display in one fold (group k-fold)."""
  per_display = jax.random.permutation(key, num_displays) % num_folds
  return jnp.broadcast_to(per_display[:, None], (num_displays, num_samples)).astype(jnp.int32)


def shuffle_within_displays(key, labels):
  """Permutes (K, S) labels across samples independently within each display."""
  keys = jax.random.split(key, labels.shape[0])
  return jax.vmap(jax.random.permutation)(keys, labels)


# ------------------------------------------------------------------------------------- AUC


def auc(scores, labels):
  """Area under the ROC curve by the Mann-Whitney rank statistic; ties count one half.

  AUC = (sum of positives' mid-ranks - P (P + 1) / 2) / (P N) = P(s+ > s-) + P(s+ = s-) / 2.

  Args:
    scores: (m,) real scores, higher meaning "positive".
    labels: (m,) bool.

  Returns:
    Scalar in [0, 1]; NaN when a class is empty.
  """
  scores = jnp.asarray(scores)
  labels = jnp.asarray(labels).astype(scores.dtype)
  ordered = jnp.sort(scores)
  below = jnp.searchsorted(ordered, scores, side='left')
  upto = jnp.searchsorted(ordered, scores, side='right')
  ranks = 0.5 * (below + upto + 1).astype(scores.dtype)   # 1-based mid-ranks.
  num_pos = labels.sum()
  num_neg = labels.shape[0] - num_pos
  return (jnp.sum(ranks * labels) - 0.5 * num_pos * (num_pos + 1)) / (num_pos * num_neg)


def masked_auc(scores, labels, mask):
  """`auc` of the trials where mask (m,) is True, with static shapes (jit/vmap friendly)."""
  mask = jnp.asarray(mask, bool)
  # Excluded trials are ranked above every included one, so they leave the ranks of the
  # included trials unchanged; they are then dropped from the sums.
  scores = jnp.where(mask, jnp.asarray(scores), jnp.inf)
  labels = jnp.asarray(labels, bool) & mask
  ordered = jnp.sort(scores)
  below = jnp.searchsorted(ordered, scores, side='left')
  upto = jnp.searchsorted(ordered, scores, side='right')
  ranks = 0.5 * (below + upto + 1).astype(ordered.dtype)
  num_pos = labels.sum()
  num_neg = mask.sum() - num_pos
  return ((jnp.sum(jnp.where(labels, ranks, 0.0)) - 0.5 * num_pos * (num_pos + 1))
          / (num_pos * num_neg))


# ---------------------------------------------------------------------- logistic regression


class Standardiser(NamedTuple):
  mean: jnp.ndarray
  scale: jnp.ndarray

  def __call__(self, x):
    """(..., d) -> (..., d + 1): standardised features and a constant 1 for the intercept."""
    z = (x - self.mean) / self.scale
    return jnp.concatenate([z, jnp.ones(z.shape[:-1] + (1,), z.dtype)], axis=-1)

  def fold_into(self, coefficients):
    """(weights (d, ...), bias (...)) with x @ weights + bias == self(x) @ coefficients.

    Applying a decoder to raw features this way never materialises a standardised copy of
    them, which matters when one decoder is applied to every time step.
    """
    weights = coefficients[:-1] / self.scale.reshape((-1,) + (1,) * (coefficients.ndim - 1))
    return weights, coefficients[-1] - jnp.tensordot(self.mean, weights, axes=1)


def fit_standardiser(x, weights) -> Standardiser:
  """Weighted per-feature mean and SD of x (m, d). Standardising makes one L2 strength fit
  units of any scale, and keeps the Newton / ridge systems well conditioned."""
  total = jnp.maximum(weights.sum(), 1e-30)
  mean = weights @ x / total
  var = weights @ (x - mean)**2 / total
  # Silent units (SD 0) get scale 1 so they stay 0 instead of dividing by zero.
  return Standardiser(mean=mean, scale=jnp.where(var > 1e-12, jnp.sqrt(var), 1.0))


@functools.partial(jax.jit, static_argnames=('num_steps',))
def fit_logistic(x, labels, weights=None, l2: float = 1e-2, num_steps: int = 15):
  """L2-regularised logistic regression by damped Newton steps.

  Minimises  sum_i w_i [log(1 + e^{z_i b}) - y_i z_i b] / sum_i w_i + l2/2 |b_{1:d}|^2
  over b (d + 1), z_i the standardised features of trial i with a 1 appended (the intercept is
  not penalised). The objective is strongly convex in the weights; each Newton direction is
  tried with step sizes 1, 1/2, ..., 1/32 and the best is taken, which keeps it monotone even on
  separable data.

  Args:
    x: (m, d) features.
    labels: (m,) bool.
    weights: (m,) non-negative trial weights (0 drops a trial; used for held-out folds).
    l2: penalty strength on the per-trial-averaged loss.
    num_steps: Newton steps.

  Returns:
    (standardiser, coefficients (d + 1,)); logit(x) = standardiser(x) @ coefficients.
  """
  weights = jnp.ones(x.shape[0], x.dtype) if weights is None else weights.astype(x.dtype)
  y = labels.astype(x.dtype)
  standardiser = fit_standardiser(x, weights)
  z = standardiser(x)
  total = jnp.maximum(weights.sum(), 1e-30)
  penalty = l2 * jnp.ones(z.shape[1]).at[-1].set(0.0)
  # A tiny ridge on the intercept keeps the Hessian invertible when a fold has one class.
  curvature_floor = penalty + 1e-6

  def loss(b):
    logits = z @ b
    return weights @ (jax.nn.softplus(logits) - y * logits) / total + 0.5 * penalty @ b**2

  def newton(b, _):
    p = jax.nn.sigmoid(z @ b)
    grad = z.T @ (weights * (p - y)) / total + penalty * b
    hess = (z.T * (weights * p * (1.0 - p))) @ z / total + jnp.diag(curvature_floor)
    direction = jnp.linalg.solve(hess, grad)
    steps = 2.0 ** -jnp.arange(6.0)
    candidates = b[None, :] - steps[:, None] * direction[None, :]
    losses = jax.vmap(loss)(candidates)
    best = jnp.argmin(losses)
    # Keep b when no step improves (already at the optimum, or roundoff).
    return jnp.where(losses[best] < loss(b), candidates[best], b), None

  coefficients, _ = jax.lax.scan(newton, jnp.zeros(z.shape[1], x.dtype), None, length=num_steps)
  return standardiser, coefficients


def cross_validated_scores(x, labels, folds, num_folds: int, l2: float = 1e-2,
                           num_steps: int = 15):
  """Held-out logits of every trial: trial i scored by the model fitted without its fold.

  Args:
    x: (m, d); labels: (m,) bool; folds: (m,) int in [0, F); num_folds: F.

  Returns:
    (m,) held-out logits.
  """

  def one_fold(fold):
    held_out = folds == fold
    standardiser, coefficients = fit_logistic(x, labels, (~held_out).astype(x.dtype), l2,
                                              num_steps)
    return jnp.where(held_out, standardiser(x) @ coefficients, 0.0)

  return jax.vmap(one_fold)(jnp.arange(num_folds)).sum(axis=0)


def cross_validated_auc(x, labels, folds, num_folds: int, l2: float = 1e-2,
                        num_steps: int = 15):
  """Mean over folds of the AUC of each fold's held-out logits, a scalar.

  Folds whose held-out trials are all of one class are left out of the mean (NaN if all are).
  """
  scores = cross_validated_scores(x, labels, folds, num_folds, l2, num_steps)
  per_fold = jax.vmap(lambda f: masked_auc(scores, labels, folds == f))(jnp.arange(num_folds))
  return jnp.nanmean(per_fold)


# --------------------------------------------------------------------- swap AUC over time


class SwapDecoding(NamedTuple):
  """auc (T,); chance (num_shuffles, T): AUCs with shuffled labels; band (2, T): their lower
  and upper percentiles."""
  auc: jnp.ndarray
  chance: jnp.ndarray
  band: jnp.ndarray


@jax.jit
def _centre_per_display(states):
  """Removes each display's mean over samples, (T, K, S, n)."""
  return states - states.mean(axis=2, keepdims=True)


MEMORY_BUDGET_BYTES = 256 * 2**20


def auto_time_batch(num_steps: int, bytes_per_step: float,
                    budget: float = MEMORY_BUDGET_BYTES) -> int:
  """The largest divisor of num_steps whose batch of steps fits the memory budget (>= 1).

  A divisor, because lax.map with a batch size that does not divide T compiles a second loop
  body for the remainder.
  """
  cap = max(int(budget // max(bytes_per_step, 1.0)), 1)
  return max(d for d in range(1, num_steps + 1) if num_steps % d == 0 and d <= cap)


def _map_over_time(fn, x, time_batch):
  """fn over the leading (time) axis of x: one vmap, or lax.map in batches to bound memory."""
  if time_batch is None or time_batch >= x.shape[0]:
    return jax.vmap(fn)(x)
  return jax.lax.map(fn, x, batch_size=time_batch)


def _auc_over_time(folds, states, labels, num_folds, l2, num_steps, time_batch):
  """(T,) cross-validated AUC at every step; folds (K, S), states (T, K, S, n), labels (K, S)."""
  x = states.reshape(states.shape[0], -1, states.shape[-1])
  flat_labels = labels.reshape(-1)
  flat_folds = folds.reshape(-1)

  def at_time(xt):
    return cross_validated_auc(xt, flat_labels, flat_folds, num_folds, l2, num_steps)

  return _map_over_time(at_time, x, time_batch)


@functools.partial(jax.jit, static_argnames=('num_folds', 'num_steps', 'time_batch',
                                             'num_shuffles'))
def _swap_aucs(key, states, labels, num_folds, l2, num_steps, time_batch, num_shuffles):
  """(real (T,), shuffled (num_shuffles, T)) AUCs, all in one compiled program."""
  _, num_displays, num_samples, _ = states.shape
  keys = jax.random.split(key, num_shuffles + 1)
  fold_keys, shuffle_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
  # Row 0 holds the real labels, rows 1.. the shuffles; one loop body serves them all.
  shuffled = jax.vmap(shuffle_within_displays, (0, None))(shuffle_keys[1:], labels)
  all_labels = jnp.concatenate([labels[None], shuffled])
  all_folds = jax.vmap(lambda k: display_folds(k, num_displays, num_samples, num_folds))(
      fold_keys)
  aucs = jax.lax.map(
      lambda lf: _auc_over_time(lf[1], states, lf[0], num_folds, l2, num_steps, time_batch),
      (all_labels, all_folds))
  return aucs[0], aucs[1:]


def swap_auc_over_time(key, states, labels, *, num_folds: int = 5, l2: float = 1e-2,
                       num_steps: int = 15, num_shuffles: int = 20, level: float = 0.95,
                       centre_per_display: bool = True,
                       time_batch: int | str | None = 'auto') -> SwapDecoding:
  """Cross-validated AUC of decoding "this trial ends as a swap" at every time step.

  Args:
    key: PRNG key (folds and shuffles).
    states: (T, K, S, n) states, e.g. the steps before the response epoch.
    labels: (K, S) bool swap labels (`swap_labels` of the network's responses).
    num_folds: F-fold cross-validation over displays (at most K).
    l2, num_steps: as `fit_logistic`.
    num_shuffles: label shuffles (within display) for the chance band; 0 skips it.
    level: coverage of the chance band.
    centre_per_display: subtract each display's mean state over its samples first, so that the
      decoder reads only trial-to-trial variability and not which display it is (displays
      differ in swap rate through their cue distances; that is not an error being set up).
    time_batch: time steps fitted at once; None: all (fastest); 'auto': as many as fit in
      `MEMORY_BUDGET_BYTES` (about 4 num_folds K S n floats each).

  Returns:
    SwapDecoding.
  """
  states = jnp.asarray(states)
  labels = jnp.asarray(labels, bool)
  if centre_per_display:
    states = _centre_per_display(states)
  if time_batch == 'auto':
    num_t, num_displays, num_samples, units = states.shape
    time_batch = auto_time_batch(
        num_t, 4.0 * num_folds * num_displays * num_samples * (units + 1) * states.dtype.itemsize)
  real, chance = _swap_aucs(key, states, labels, num_folds, l2, num_steps, time_batch,
                            num_shuffles)
  if num_shuffles == 0:
    return SwapDecoding(auc=real, chance=chance, band=jnp.full((2, real.shape[0]), jnp.nan))
  tail = 50.0 * (1.0 - level)
  band = jnp.asarray(np.nanpercentile(np.asarray(chance), [tail, 100.0 - tail], axis=0))
  return SwapDecoding(auc=real, chance=chance, band=band)


# ------------------------------------------------------------------ cross-temporal decoding


def fit_ridge(x, targets, weights, l2: float = 1e-2):
  """Weighted ridge regression on standardised features with an unpenalised intercept.

  Args:
    x: (m, d); targets: (m, p); weights: (m,) non-negative.

  Returns:
    (standardiser, coefficients (d + 1, p)); prediction = standardiser(x) @ coefficients.
  """
  standardiser = fit_standardiser(x, weights)
  z = standardiser(x)
  total = jnp.maximum(weights.sum(), 1e-30)
  penalty = l2 * jnp.ones(z.shape[1]).at[-1].set(0.0) + 1e-6
  gram = (z.T * weights) @ z / total + jnp.diag(penalty)
  return standardiser, jnp.linalg.solve(gram, (z.T * weights) @ targets / total)


class CrossTemporal(NamedTuple):
  """Rows: training time t1; columns: testing time t2. error (T, T): mean absolute circular
  error of held-out decoded angles, radians (chance pi / 2); similarity (T, T): mean
  cos(decoded - true) (chance 0, perfect 1)."""
  error: jnp.ndarray
  similarity: jnp.ndarray


@functools.partial(jax.jit, static_argnames=('num_folds', 'time_batch'))
def _cross_temporal(states, angles, folds, num_folds, l2, time_batch):
  num_t = states.shape[0]
  x = states.reshape(num_t, -1, states.shape[-1])                      # (T, m, n)
  truth = angles.reshape(-1)
  targets = jnp.stack([jnp.cos(truth), jnp.sin(truth)], axis=-1)
  flat_folds = folds.reshape(-1)

  def train_at(xt):
    def one_fold(fold):
      held_out = flat_folds == fold
      standardiser, coefficients = fit_ridge(xt, targets, (~held_out).astype(xt.dtype), l2)
      weights, bias = standardiser.fold_into(coefficients)
      predicted = x @ weights + bias                                    # (T, m, 2)
      decoded = jnp.arctan2(predicted[..., 1], predicted[..., 0])
      diff = circular.wrap(decoded - truth)
      return (jnp.where(held_out, jnp.abs(diff), 0.0).sum(-1),
              jnp.where(held_out, jnp.cos(diff), 0.0).sum(-1))
    error, similarity = jax.vmap(one_fold)(jnp.arange(num_folds))
    return error.sum(0) / truth.shape[0], similarity.sum(0) / truth.shape[0]

  return _map_over_time(train_at, x, time_batch)


def cross_temporal_decoding(key, states, angles, *, num_folds: int = 5, l2: float = 1e-2,
                            time_batch: int | str | None = 'auto') -> CrossTemporal:
  """Decode an angle at t2 with a ridge decoder trained at t1, for every (t1, t2).

  Folds hold out whole displays, so the decoder must generalise to feature values it was not
  trained on rather than recognise a display; every trial is held out once.

  Args:
    key: PRNG key (fold assignment).
    states: (T, K, S, n) states.
    angles: (K,) per-display angles (e.g. the cued item's report feature) or (K, S).
    num_folds: F; at most K.
    l2: ridge strength on the per-trial-averaged squared error.
    time_batch: training times fitted at once; None: all; 'auto': as many as fit in
      `MEMORY_BUDGET_BYTES` (about 4 num_folds K S (n + 1 + 2 T) floats each).

  Returns:
    CrossTemporal with (T, T) matrices.
  """
  states = jnp.asarray(states)
  _, num_displays, num_samples, _ = states.shape
  angles = jnp.broadcast_to(
      jnp.asarray(angles).reshape(num_displays, -1), (num_displays, num_samples))
  folds = display_folds(key, num_displays, num_samples, num_folds)
  if time_batch == 'auto':
    num_t = states.shape[0]
    units = states.shape[-1]
    time_batch = auto_time_batch(num_t, 4.0 * num_folds * num_displays * num_samples
                                 * (units + 1 + 2 * num_t) * states.dtype.itemsize)
  error, similarity = _cross_temporal(states, angles, folds, num_folds, l2, time_batch)
  return CrossTemporal(error=error, similarity=similarity)
