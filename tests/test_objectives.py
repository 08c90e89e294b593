"""Objectives: known values of their pieces, finite losses and gradients on tiny inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import gammaln

from rnn_behaviour import diffusion
from rnn_behaviour import objectives
from rnn_behaviour import rnn
from rnn_behaviour import sampling
from rnn_behaviour import task
from rnn_behaviour import train
from rnn_behaviour.behaviour import parametric
from rnn_behaviour.configs import authors
from tests import tiny


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
  variables = tiny.init_network(network, tiny_config.task)
  batch = objectives.sample_batch(jax.random.key(1), tiny_config,
                                  parametric.from_config(tiny_config.behaviour))
  loss_fn = objectives.make_loss_fn(tiny_config, network)
  (loss, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
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
  variables = tiny.init_network(network, config.task)
  constants = {'readout': jnp.zeros_like(variables['constants']['readout'])}
  batch = objectives.sample_batch(jax.random.key(1), config,
                                  parametric.from_config(config.behaviour))
  loss, _ = jax.jit(objectives.make_loss_fn(config, network))(variables['params'], constants,
                                                              batch, jax.random.key(2))
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


@pytest.mark.parametrize('scale', [1.0, 50.0])
def test_denoise_scale_multiplies_the_diffusion_loss(tiny_config, scale):
  tiny_config.objective.denoise_scale = scale
  network, batch, loss = _blind_network(tiny_config, 'diffusion')
  key_chain, _, _ = jax.random.split(jax.random.key(2), 3)
  y0 = diffusion.angle_to_point(batch.responses, tiny_config.diffusion.radius)
  mus = diffusion.posterior_means(network.schedule, y0,
                                  diffusion.forward_chain(key_chain, network.schedule, y0))
  np.testing.assert_allclose(loss, scale * float(jnp.mean(jnp.sum(mus**2, -1))), rtol=1e-5)


def test_kernel_target_loss_is_fifty_times_the_mean_step_error(tiny_config):
  """The authors' scale: (D f - (mu - (1 - a) y_t) / a)^2 averaged over the 2 dimensions is
  1 / (2 a^2) ||m - mu||^2 with m = (1 - a) y_t + a D f."""
  a = 0.1
  k = jax.random.split(jax.random.key(0), 3)
  y_t, mu, df = (jax.random.normal(key, (100, 2)) for key in k)
  kernel = jnp.mean(jnp.mean((df - (mu - (1 - a) * y_t) / a)**2, -1))
  ours = jnp.mean(jnp.sum(((1 - a) * y_t + a * df - mu)**2, -1))
  scale = authors.apply_authors_options(tiny_config).objective.denoise_scale
  assert scale == 50.0
  np.testing.assert_allclose(kernel, scale * ours, rtol=1e-5)


def test_onset_mean_norm_penalty_known_value_and_finite_gradient_at_zero():
  # Display 0: samples (2, 4) and (4, 4), mean (3, 4), norm 5; display 1: mean 0.
  y = jnp.array([[[2.0, 4.0], [4.0, 4.0]], [[1.0, -1.0], [-1.0, 1.0]]])
  np.testing.assert_allclose(objectives.onset_mean_norm_penalty(y), 2.5, rtol=1e-6)
  grad = jax.grad(objectives.onset_mean_norm_penalty)(y)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad[0], [[0.15, 0.2], [0.15, 0.2]], rtol=1e-5)   # (3, 4)/5 / 2 / 2
  np.testing.assert_array_equal(grad[1], 0.0)


def test_mean_norm_state_penalty_known_value():
  epochs = task.Epochs(stimulus=2, delay=0, cue=1, post_cue=1, response=3)
  # Every state of an epoch has norm 1, 2, 3 (stimulus, cue, post-cue); the empty delay is
  # skipped; the response null-space norms average 0.5.
  unit = jnp.zeros((1, 1, 4)).at[..., 0].set(1.0)
  trial = jnp.concatenate([jnp.tile(unit, (2, 3, 5, 1)), 2 * jnp.tile(unit, (1, 3, 5, 1)),
                           3 * jnp.tile(unit, (1, 3, 5, 1))])
  value = objectives.mean_norm_state_penalty(epochs, trial, jnp.array([0.0, 0.5, 1.0]))
  np.testing.assert_allclose(value, 1 + 2 + 3 + 0.5, rtol=1e-6)


@pytest.mark.parametrize('onset', ['reset', 'regularise'])
def test_free_running_loss_of_a_blind_network_is_half_radius_squared(tiny_config, onset):
  tiny_config.diffusion.onset = onset
  tiny_config.diffusion.onset_penalty = 'mean_norm'   # Zero for a blind readout.
  _, _, loss = _blind_network(tiny_config, 'free_running')
  np.testing.assert_allclose(loss, 0.5 * tiny_config.diffusion.radius**2, rtol=1e-5)


def test_free_running_scores_each_samples_data_point(tiny_config):
  """Against the free-running readout itself: (1/2) mean ||D x_t - y0||^2 over the response."""
  tiny_config.objective.name = 'free_running'
  tiny_config.objective.state_weight = 0.0
  network = rnn.make_network(tiny_config)
  variables = tiny.init_network(network, tiny_config.task)
  batch = objectives.sample_batch(jax.random.key(1), tiny_config,
                                  parametric.from_config(tiny_config.behaviour))
  loss, metrics = jax.jit(objectives.make_loss_fn(tiny_config, network))(
      variables['params'], variables['constants'], batch, jax.random.key(2))
  _, states = sampling.make_sampler(tiny_config, network)(
      variables, batch.displays, jax.random.key(2), batch.responses.shape[1], record=True)
  readout = network.readout(variables, states[network.epochs.trial_length:])
  y0 = diffusion.angle_to_point(batch.responses, tiny_config.diffusion.radius)
  np.testing.assert_allclose(loss, 0.5 * float(jnp.mean(jnp.sum((readout - y0)**2, -1))),
                             rtol=1e-5)
  assert float(metrics['readout_mse']) == float(loss)


@pytest.mark.parametrize('response_noise', ['readout', 'all'])
def test_reverse_noise_reaches_every_unit_under_teacher_forcing(tiny_config, response_noise):
  """A network with F = 0 (all parameters zero): x <- 0.9 x + sigma_t xi. From x = 0, teacher
  forcing leaves the null space untouched unless the noise reaches every unit, where its mean
  squared norm is (n - 2) sum_s 0.81^(steps after s) sigma_s^2."""
  tiny_config.diffusion.response_noise = response_noise
  network = rnn.make_network(tiny_config)
  variables = tiny.init_network(network, tiny_config.task)
  variables = {'params': jax.tree_util.tree_map(jnp.zeros_like, variables['params']),
               'constants': variables['constants']}
  n, num_steps = tiny_config.model.num_units, tiny_config.diffusion.num_steps
  k, s = 4, 2000
  _, response_drives = network.drives(variables, jnp.zeros((5, k, train.input_size(
      tiny_config.task))))
  y0 = jnp.zeros((k, s, 2))
  ys = diffusion.forward_chain(jax.random.key(1), network.schedule, y0)
  x = jnp.zeros((k, s, n))
  *_, null_norms = objectives.teacher_forced_response(network, variables, response_drives, x, ys,
                                                      y0, jax.random.key(2), null_norms=True)
  if response_noise == 'readout':
    np.testing.assert_allclose(null_norms, 0.0, atol=1e-5)   # Rounding of (I - D^T D) only.
    return
  sigmas2 = np.asarray(network.schedule.posterior_variances)[::-1]   # Reverse order T..1.
  expected_sq = [(n - 2) * sum(0.81**(j - i) * sigmas2[i] for i in range(j + 1))
                 for j in range(num_steps)]
  # Mean norms of (n - 2)-dim Gaussians: sqrt(v) sqrt(2) Gamma((d+1)/2) / Gamma(d/2) per unit.
  d = n - 2
  chi_mean = np.sqrt(2) * np.exp(gammaln((d + 1) / 2) - gammaln(d / 2))
  expected = np.sqrt(np.array(expected_sq) / d) * chi_mean
  np.testing.assert_allclose(np.asarray(null_norms)[::-1], expected, rtol=0.03)
