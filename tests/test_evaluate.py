"""Judging statistics: the energy distance, its noise floor, the kernel density."""

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import evaluate


def _von_mises(key, shape, mean, kappa):
  return circular.sample_von_mises(key, jnp.full(shape, mean), kappa)


def test_energy_distance_is_zero_for_identical_sets():
  x = jax.random.uniform(jax.random.key(0), (5, 40), minval=-np.pi, maxval=np.pi)
  np.testing.assert_allclose(evaluate.circular_energy_distance(x, x), 0.0, atol=1e-6)


def test_energy_distance_noise_floor_is_calibrated():
  # Two independent draws of S from one distribution: the V-statistic's expectation is
  # E|X - X'| / S (only the zero diagonal of the within-set means differs).
  k, s = 400, 32
  key_x, key_y, key_ref = jax.random.split(jax.random.key(1), 3)
  x = _von_mises(key_x, (k, s), 0.5, 4.0)
  y = _von_mises(key_y, (k, s), 0.5, 4.0)
  reference = _von_mises(key_ref, (200_000,), 0.5, 4.0)
  mean_pair_distance = jnp.mean(circular.circular_distance(reference[::2], reference[1::2]))
  floor = jnp.mean(evaluate.circular_energy_distance(x, y))
  np.testing.assert_allclose(floor, mean_pair_distance / s, rtol=0.1)
  # A different distribution stands far above that floor.
  shifted = _von_mises(key_y, (k, s), 0.5 + np.pi / 2, 4.0)
  assert jnp.mean(evaluate.circular_energy_distance(x, shifted)) > 20 * floor
  assert jnp.all(evaluate.circular_energy_distance(x, y) >= -1e-6)


def test_kernel_density_integrates_to_one():
  samples = jnp.array([[0.1, 2.0, -3.0, 3.1, 0.0]])
  grid = jnp.linspace(-np.pi, np.pi, 4001)[:-1]
  for kappa in (2.0, 20.0, 200.0):
    density = jnp.exp(evaluate.kde_log_density(jnp.repeat(samples, grid.size, 0), grid, kappa))
    np.testing.assert_allclose(jnp.sum(density) * (2 * np.pi / grid.size), 1.0, rtol=1e-4)


def test_kde_log_likelihood_prefers_the_generating_distribution():
  key_s, key_o = jax.random.split(jax.random.key(2))
  samples = _von_mises(key_s, (300, 256), 1.0, 8.0)
  observed = _von_mises(key_o, (300,), 1.0, 8.0)
  wrong = circular.wrap(samples + 1.0)
  assert (evaluate.kde_log_likelihood(samples, observed, 20.0)
          > evaluate.kde_log_likelihood(wrong, observed, 20.0) + 1.0)
