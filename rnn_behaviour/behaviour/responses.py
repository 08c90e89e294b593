"""Swap-model responses: mixture weights of a display and a vectorised response sampler.

Every behavioural model that generates surrogate data exposes the same two functions
(see `ResponseModel`):

  mixture_weights(displays) -> (K, N + 1): column 0 the guess weight, column 1 + j item j's.
  sample_responses(key, displays, num_samples) -> (K, S) response angles in [-pi, pi).

A response is a draw from p(y) = w_guess / (2 pi) + sum_j w_j vM(y; r_j, kappa).
"""

from __future__ import annotations

from typing import Protocol

import jax
import jax.numpy as jnp

from rnn_behaviour import circular
from rnn_behaviour.task import Displays


class ResponseModel(Protocol):
  """What a surrogate-data generator provides (parametric or fitted)."""

  def mixture_weights(self, displays: Displays) -> jnp.ndarray:
    ...

  def sample_responses(self, key, displays: Displays, num_samples: int) -> jnp.ndarray:
    ...


def weights_from_logits(guess_logit, item_logits):
  """softmax([u, l_1, ..., l_N]) -> (..., N + 1), guess first."""
  guess_logit = jnp.broadcast_to(guess_logit, item_logits.shape[:-1])[..., None]
  return jax.nn.softmax(jnp.concatenate([guess_logit, item_logits], axis=-1), axis=-1)


def _per_display(value, ndim):
  """A scalar, (K,) or (K, S) parameter reshaped to broadcast against ndim-dim (K, S, ...)."""
  value = jnp.asarray(value, jnp.float32)
  if value.ndim == 0:
    return value
  return value.reshape(value.shape + (1,) * (ndim - value.ndim))


def sample_mixture(key, weights, report, kappa, num_samples: int):
  """Draws responses from von Mises mixtures with a uniform guess component.

  Args:
    key: PRNG key.
    weights: (K, N + 1) or (K, S, N + 1) mixture weights, guess first.
    report: (K, N) item report features, radians.
    kappa: scalar, (K,) or (K, S) concentration of the remembered components.
    num_samples: S.

  Returns:
    (K, S) responses in [-pi, pi).
  """
  num_displays = report.shape[0]
  key_comp, key_noise, key_guess = jax.random.split(key, 3)
  weights = jnp.broadcast_to(
      weights if weights.ndim == 3 else weights[:, None, :],
      (num_displays, num_samples, weights.shape[-1]))
  component = jax.random.categorical(key_comp, jnp.log(jnp.clip(weights, 1e-30)), axis=-1)
  # Component 0 is a guess; component 1 + j reports item j.
  item = jnp.clip(component - 1, 0, report.shape[1] - 1)
  centre = jnp.take_along_axis(report, item, axis=1)
  kappa = jnp.broadcast_to(_per_display(kappa, 2), (num_displays, num_samples))
  remembered = circular.sample_von_mises(key_noise, centre, kappa)
  guess = jax.random.uniform(key_guess, centre.shape, minval=-jnp.pi, maxval=jnp.pi)
  return jnp.where(component == 0, guess, remembered)


def mixture_log_density(y, weights, report, kappa):
  """log p(y) of the mixture above; y (K, S), weights (K, N+1) or (K, S, N+1), report (K, N)."""
  weights = weights if weights.ndim == 3 else weights[:, None, :]
  kappa = _per_display(kappa, 3)
  log_items = circular.log_von_mises(y[..., None], report[:, None, :], kappa)
  log_terms = jnp.concatenate(
      [jnp.full(y.shape + (1,), -jnp.log(circular.TWO_PI)), log_items], axis=-1)
  return jax.scipy.special.logsumexp(log_terms + jnp.log(jnp.clip(weights, 1e-30)), axis=-1)
