"""Circular helpers shared by every module: wrapping, distances, von Mises codes and statistics.

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


def log_von_mises(x, mu, kappa):
  """log vM(x; mu, kappa) = kappa cos(x - mu) - log(2 pi I0(kappa)), stable for large kappa."""
  # log I0(k) = k + log(i0e(k)); subtracting kappa inside the cosine term keeps it bounded.
  return kappa * (jnp.cos(x - mu) - 1.0) - jnp.log(TWO_PI * jax.scipy.special.i0e(kappa))


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
