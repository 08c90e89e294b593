"""The wrapped symmetric alpha-stable law on the circle: the BNS model's heavy-tailed emission
(config.fit.emission = 'wrapped_stable'), its density for the fit and its draws for surrogates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from rnn_behaviour import circular


def stable_log_density(cos_table, gamma, alpha):
  """log of the wrapped symmetric stable density from its Fourier series.

  p(x) = (1 / 2 pi) (1 + 2 sum_{p=1}^P exp(-(gamma p)^alpha) cos(p x)); cos_table (..., P)
  holds cos(p x); gamma, alpha broadcast against (...). Truncation can make the series dip
  below zero far in the tails of very peaked laws; it is floored there.
  """
  p = jnp.arange(1, cos_table.shape[-1] + 1, dtype=jnp.float32)
  coef = jnp.exp(-jnp.power(gamma[..., None] * p, alpha[..., None]))
  dens = (1.0 + 2.0 * jnp.sum(coef * cos_table, axis=-1)) / (2 * jnp.pi)
  return jnp.log(jnp.maximum(dens, 1e-8))


class WrappedStable(dist.Distribution):
  """Wrapped symmetric alpha-stable law on the circle, characteristic function exp(-|gamma t|^a).

  Density by its Fourier series truncated at `num_terms` (see `stable_log_density`);
  samples by Chambers-Mallows-Stuck, wrapped to [-pi, pi).
  """
  arg_constraints = {'loc': constraints.real, 'gamma': constraints.positive,
                     'alpha': constraints.interval(0.0, 2.0)}
  support = constraints.circular
  reparametrized_params = []

  def __init__(self, loc, gamma, alpha, num_terms: int = 64, *, validate_args=None):
    self.loc, self.gamma, self.alpha = jnp.broadcast_arrays(loc, gamma, alpha)
    self.num_terms = num_terms
    super().__init__(batch_shape=jnp.shape(self.loc), validate_args=validate_args)

  def sample(self, key, sample_shape=()):
    shape = sample_shape + self.batch_shape
    noise = sample_symmetric_stable(key, jnp.broadcast_to(self.alpha, shape),
                                    jnp.broadcast_to(self.gamma, shape))
    return circular.wrap(self.loc + noise)

  def log_prob(self, value):
    p = jnp.arange(1, self.num_terms + 1, dtype=jnp.float32)
    cos_table = jnp.cos((value - self.loc)[..., None] * p)
    return stable_log_density(cos_table, self.gamma, self.alpha)

  pytree_data_fields = ('loc', 'gamma', 'alpha')
  pytree_aux_fields = ('num_terms',)


def sample_symmetric_stable(key, alpha, gamma):
  """Symmetric alpha-stable draws, char. function exp(-|gamma t|^alpha) (Chambers-Mallows-Stuck).

  alpha in (0, 2], gamma > 0, broadcast to a common shape.
  """
  shape = jnp.broadcast_shapes(jnp.shape(alpha), jnp.shape(gamma))
  key_v, key_w = jax.random.split(key)
  v = jax.random.uniform(key_v, shape, minval=-np.pi / 2, maxval=np.pi / 2)
  w = jax.random.exponential(key_w, shape)
  x = (jnp.sin(alpha * v) / jnp.power(jnp.cos(v), 1.0 / alpha)
       * jnp.power(jnp.cos((1.0 - alpha) * v) / w, (1.0 - alpha) / alpha))
  return gamma * x


def sample_stable_mixture(key, weights, report, gamma, alpha):
  """Like `responses.sample_mixture` with wrapped-stable noise; weights (K, S, N+1)."""
  key_comp, key_noise, key_guess = jax.random.split(key, 3)
  component = jax.random.categorical(key_comp, jnp.log(jnp.clip(weights, 1e-30)), axis=-1)
  item = jnp.clip(component - 1, 0, report.shape[1] - 1)
  centre = jnp.take_along_axis(report, item, axis=1)
  remembered = circular.wrap(centre + sample_symmetric_stable(key_noise, alpha, gamma))
  guess = jax.random.uniform(key_guess, centre.shape, minval=-jnp.pi, maxval=jnp.pi)
  return jnp.where(component == 0, guess, remembered)
