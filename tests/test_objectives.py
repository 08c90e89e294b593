"""Objectives: known values of their pieces, finite losses and gradients on tiny inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import diffusion
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


def _blind_network(config, name):
  """A network whose readout matrix D is zero: it always reports the origin, so every loss
  has a value computable without running it."""
  config.objective.name = name
  config.objective.state_weight = 0.0
  network = rnn.make_network(config)
  variables = network.init(jax.random.key(0), train.input_size(config.task))
  constants = {'readout': jnp.zeros_like(variables['constants']['readout'])}
  batch = objectives.sample_batch(jax.random.key(1), config,
                                  parametric.from_config(config.behaviour))
  loss, _ = objectives.make_loss_fn(config, network)(variables['params'], constants, batch,
                                                     jax.random.key(2))
  return network, batch, float(loss)


@pytest.mark.parametrize('name', ['task_optimal', 'behaviour_mse'])
def test_readout_mse_of_a_blind_network_is_radius_squared(tiny_config, name):
  _, _, loss = _blind_network(tiny_config, name)
  np.testing.assert_allclose(loss, tiny_config.diffusion.radius**2, rtol=1e-5)


def test_diffusion_loss_of_a_blind_network_is_mean_squared_posterior_mean(tiny_config):
  network, batch, loss = _blind_network(tiny_config, 'diffusion')
  key_chain, _, _ = jax.random.split(jax.random.key(2), 3)      # As the loss splits its key.
  y0 = diffusion.angle_to_point(batch.responses, tiny_config.diffusion.radius)
  ys = diffusion.forward_chain(key_chain, network.schedule, y0)
  mus = diffusion.posterior_means(network.schedule, y0, ys)
  np.testing.assert_allclose(loss, float(jnp.mean(jnp.sum(mus**2, -1))), rtol=1e-5)


def test_moment_matching_loss_of_a_blind_network(tiny_config):
  _, batch, loss = _blind_network(tiny_config, 'moment_matching')
  at_zero = jnp.zeros_like(batch.responses)       # atan2(0, 0) = 0: every response is 0.
  moments = jnp.mean(jnp.sum((objectives.trig_moments(at_zero)
                              - objectives.trig_moments(batch.responses))**2, -1))
  swap = (objectives.soft_swap_rate(at_zero, batch.displays)
          - objectives.soft_swap_rate(batch.responses, batch.displays))**2
  np.testing.assert_allclose(loss, float(moments + swap + 1.0), rtol=1e-5)   # radial term: 1.
