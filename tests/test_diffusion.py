"""The diffusion schedule's algebra, checked against first principles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import circular
from rnn_behaviour import diffusion


@pytest.fixture
def schedule():
  return diffusion.linear_schedule(40, 0.01, 0.30)


def test_schedule_products(schedule):
  betas = np.linspace(0.01, 0.30, 40)
  np.testing.assert_allclose(schedule.betas, betas, rtol=1e-6)
  np.testing.assert_allclose(schedule.alpha_bars, np.cumprod(1 - betas), rtol=1e-5)
  np.testing.assert_allclose(schedule.alpha_bars_prev[1:], schedule.alpha_bars[:-1])
  assert schedule.alpha_bars_prev[0] == 1.0
  # The chain ends close to the prior: y_T retains almost nothing of y0.
  assert 0 < schedule.alpha_bars[-1] < 2e-3


def test_posterior_is_gaussian_conditioning(schedule):
  """mu_t and btilde_t equal the conditional of the joint Gaussian (y_{t-1}, y_t) | y0."""
  abar, abar_prev, alpha = (np.asarray(a, np.float64) for a in
                            (schedule.alpha_bars, schedule.alpha_bars_prev, schedule.alphas))
  var_prev, var_t = 1 - abar_prev, 1 - abar
  cov = np.sqrt(alpha) * var_prev          # Cov(y_{t-1}, y_t | y0).
  gain = cov / var_t
  y0_coef = np.sqrt(abar_prev) - gain * np.sqrt(abar)
  np.testing.assert_allclose(schedule.posterior_yt_coefs, gain, rtol=1e-5)
  np.testing.assert_allclose(schedule.posterior_y0_coefs, y0_coef, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(schedule.posterior_variances, var_prev - cov**2 / var_t,
                             rtol=1e-4, atol=1e-7)
  assert schedule.posterior_variances[0] == 0.0
  assert diffusion.reverse_noise_scales(schedule)[0] == 0.0


def test_forward_chain_matches_closed_form_marginals(schedule):
  y0 = jnp.broadcast_to(jnp.array([2.5, 0.0]), (20000, 2))
  ys = diffusion.forward_chain(jax.random.key(0), schedule, y0)
  assert ys.shape == (40, 20000, 2)
  for t in (1, 10, 40):
    mean = np.sqrt(schedule.alpha_bars[t - 1]) * 2.5
    var = 1 - schedule.alpha_bars[t - 1]
    np.testing.assert_allclose(ys[t - 1, :, 0].mean(), mean, atol=4 * np.sqrt(var / 20000))
    np.testing.assert_allclose(ys[t - 1].var(axis=0), [var, var], rtol=0.05)


def test_posterior_mean_is_regression_of_chain(schedule):
  """Empirically, E[y_{t-1} | y_t, y0] is linear in y_t with the posterior's coefficients."""
  y0 = jnp.zeros((50000, 2)) + jnp.array([1.0, -2.0])
  ys = diffusion.forward_chain(jax.random.key(1), schedule, y0)
  t = 12
  x, target = np.asarray(ys[t - 1, :, 0]), np.asarray(ys[t - 2, :, 0])
  slope = np.cov(x, target)[0, 1] / x.var()
  np.testing.assert_allclose(slope, schedule.posterior_yt_coefs[t - 1], rtol=0.03)
  mus = diffusion.posterior_means(schedule, y0, ys)
  residual = target - np.asarray(mus[t - 1, :, 0])
  assert abs(residual.mean()) < 0.01
  np.testing.assert_allclose(residual.var(), schedule.posterior_variances[t - 1], rtol=0.05)


def test_angle_point_round_trip():
  theta = jnp.linspace(-np.pi, np.pi - 1e-3, 11)
  y = diffusion.angle_to_point(theta, 2.5)
  np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), 2.5, rtol=1e-6)
  angles = diffusion.point_to_angle(y)
  assert float(angles.min()) >= -np.pi and float(angles.max()) < np.pi
  np.testing.assert_allclose(circular.circular_distance(angles, theta), 0.0, atol=1e-5)


def test_step_embedding_distinguishes_steps():
  e = diffusion.step_embedding(jnp.arange(1, 41), 16)
  assert e.shape == (40, 16)
  distances = jnp.linalg.norm(e[:, None] - e[None], axis=-1) + jnp.eye(40) * 10
  assert float(distances.min()) > 0.1
