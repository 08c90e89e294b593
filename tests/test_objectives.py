"""Objectives: known values of their pieces, finite losses and gradients on tiny inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import objectives
from rnn_behaviour import rnn
from rnn_behaviour import task
from rnn_behaviour import train
from rnn_behaviour.behaviour import parametric


def test_trig_moments_known_values():
  angles = jnp.array([[0.0, np.pi / 2], [np.pi / 4, np.pi / 4]])
  np.testing.assert_allclose(objectives.trig_moments(angles),
                             [[0.5, 0.5, 0.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5), 0.0, 1.0]],
                             atol=1e-6)


def test_soft_swap_rate_matches_hard_rate_when_sharp():
  d = task.Displays(cue=jnp.zeros((1, 2)), report=jnp.array([[0.0, 2.0]]), cued=jnp.array([0]))
  responses = jnp.array([[0.0, 0.1, 2.0, 1.9]])
  np.testing.assert_allclose(objectives.soft_swap_rate(responses, d, sharpness=50.0), 0.5,
                             atol=1e-3)


def test_onset_penalty_is_mean_shift_for_prior_draws():
  y = jax.random.normal(jax.random.key(0), (4, 20000, 2)) * np.sqrt(0.7)
  assert float(objectives.onset_prior_penalty(y, 0.7)) < 1e-3
  shifted = y + jnp.array([0.3, -0.4])
  np.testing.assert_allclose(objectives.onset_prior_penalty(shifted, 0.7), 0.25, atol=2e-3)


@pytest.mark.parametrize('name,onset', [(name, 'reset') for name in objectives.OBJECTIVES]
                         + [('diffusion', 'regularise')])
def test_losses_and_gradients_are_finite(tiny_config, name, onset):
  tiny_config.objective.name = name
  tiny_config.diffusion.onset = onset
  network = rnn.make_network(tiny_config)
  variables = network.init(jax.random.key(0), train.input_size(tiny_config.task))
  batch = objectives.sample_batch(jax.random.key(1), tiny_config,
                                  parametric.from_config(tiny_config.behaviour))
  loss_fn = objectives.make_loss_fn(tiny_config, network)
  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      variables['params'], variables['constants'], batch, jax.random.key(2))
  assert np.isfinite(float(loss)) and float(loss) > 0
  assert float(metrics['loss']) == float(loss)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert sum(float(jnp.sum(g**2)) for g in leaves) > 0
