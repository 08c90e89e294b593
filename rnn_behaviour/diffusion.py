"""The diffusion schedule of the response epoch and its closed-form algebra (METHOD sec. 5).

Steps are numbered t = 1..T; arrays indexed by step hold step t at index t - 1.

  beta_t linear from beta_min to beta_max,  alpha_t = 1 - beta_t,  abar_t = prod_{s<=t} alpha_s,
  abar_0 = 1.
  Forward chain:  y_t = sqrt(alpha_t) y_{t-1} + sqrt(beta_t) eps_t.
  Marginal:       y_t | y0 ~ N(sqrt(abar_t) y0, (1 - abar_t) I).
  Posterior:      y_{t-1} | y_t, y0 ~ N(mu_t, btilde_t I),
    mu_t     = sqrt(abar_{t-1}) beta_t / (1 - abar_t) y0
               + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) y_t,
    btilde_t = (1 - abar_{t-1}) beta_t / (1 - abar_t)          (btilde_1 = 0).
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular


@flax.struct.dataclass
class Schedule:
  """Per-step coefficients, each (T,), index t - 1 for step t."""
  betas: jnp.ndarray
  alphas: jnp.ndarray
  alpha_bars: jnp.ndarray
  alpha_bars_prev: jnp.ndarray       # abar_{t-1}, with abar_0 = 1.

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]

  @property
  def posterior_variances(self):
    """btilde_t, (T,)."""
    return (1.0 - self.alpha_bars_prev) * self.betas / (1.0 - self.alpha_bars)

  @property
  def prior_variance(self):
    """Variance of y_T | y0 per coordinate, 1 - abar_T: what the response starts from."""
    return 1.0 - self.alpha_bars[-1]

  @property
  def posterior_y0_coefs(self):
    """Coefficient of y0 in mu_t, (T,)."""
    return jnp.sqrt(self.alpha_bars_prev) * self.betas / (1.0 - self.alpha_bars)

  @property
  def posterior_yt_coefs(self):
    """Coefficient of y_t in mu_t, (T,)."""
    return jnp.sqrt(self.alphas) * (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars)


def linear_schedule(num_steps: int, beta_min: float, beta_max: float) -> Schedule:
  """beta_t linear from beta_min (t = 1) to beta_max (t = T), in float64 then cast."""
  betas = np.linspace(beta_min, beta_max, num_steps, dtype=np.float64)
  alpha_bars = np.cumprod(1.0 - betas)
  alpha_bars_prev = np.concatenate([[1.0], alpha_bars[:-1]])
  as32 = lambda a: jnp.asarray(a, jnp.float32)
  return Schedule(betas=as32(betas), alphas=as32(1.0 - betas), alpha_bars=as32(alpha_bars),
                  alpha_bars_prev=as32(alpha_bars_prev))


def schedule_from_config(diffusion_config) -> Schedule:
  c = diffusion_config
  return linear_schedule(c.num_steps, c.beta_min, c.beta_max)


def angle_to_point(theta, radius: float):
  """y0 = rho (cos theta, sin theta), (..., 2)."""
  return radius * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)


def point_to_angle(y):
  """atan2(y_2, y_1) for (..., 2) points, wrapped to [-pi, pi)."""
  return circular.wrap(jnp.arctan2(y[..., 1], y[..., 0]))


def forward_chain(key, schedule: Schedule, y0):
  """One forward chain per data point: y_1..y_T, shape (T,) + y0.shape."""
  eps = jax.random.normal(key, (schedule.num_steps,) + y0.shape, y0.dtype)

  def step(y_prev, inputs):
    alpha, beta, e = inputs
    y = jnp.sqrt(alpha) * y_prev + jnp.sqrt(beta) * e
    return y, y

  _, ys = jax.lax.scan(step, y0, (schedule.alphas, schedule.betas, eps))
  return ys


def marginal_sample(key, schedule: Schedule, y0, t: int):
  """A draw of y_t | y0 (t in 1..T)."""
  eps = jax.random.normal(key, y0.shape, y0.dtype)
  abar = schedule.alpha_bars[t - 1]
  return jnp.sqrt(abar) * y0 + jnp.sqrt(1.0 - abar) * eps


def posterior_means(schedule: Schedule, y0, ys):
  """mu_t for every step: ys (T, ..., 2) holding y_1..y_T, y0 (..., 2) -> (T, ..., 2)."""
  extra = (1,) * y0.ndim
  c0 = schedule.posterior_y0_coefs.reshape((-1,) + extra)
  ct = schedule.posterior_yt_coefs.reshape((-1,) + extra)
  return c0 * y0 + ct * ys


def reverse_noise_scales(schedule: Schedule):
  """sigma_t = sqrt(btilde_t), (T,); zero on the last reverse step (t = 1)."""
  return jnp.sqrt(schedule.posterior_variances)


def step_embedding(t, size: int):
  """Sinusoidal embedding of diffusion steps t (...,) -> (..., size); size even."""
  half = size // 2
  freqs = jnp.exp(-np.log(1000.0) * jnp.arange(half) / max(half - 1, 1))
  angles = jnp.asarray(t, jnp.float32)[..., None] * freqs
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
