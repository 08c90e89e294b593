"""Cells, the network's pure steps and the unrolled trial."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import circular
from rnn_behaviour import rnn
from rnn_behaviour import task
from rnn_behaviour import train
from tests import tiny


def test_softplus_value_and_gradient_match_reference():
  z = jnp.linspace(-30, 30, 301)
  np.testing.assert_allclose(rnn.softplus(z), jax.nn.softplus(z), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(jax.grad(lambda z: rnn.softplus(z).sum())(z), jax.nn.sigmoid(z),
                             rtol=1e-5, atol=1e-7)


def test_orthonormal_rows():
  d = rnn.orthonormal_rows(jax.random.key(0), 2, 16)
  np.testing.assert_allclose(d @ d.T, jnp.eye(2), atol=1e-5)


@pytest.mark.parametrize('cell', ['rate', 'dendritic'])
def test_network_steps_and_sampling(tiny_config, cell):
  tiny_config.model.cell = cell
  network = rnn.make_network(tiny_config)
  variables = tiny.init_network(network, tiny_config.task)
  n = tiny_config.model.num_units
  x = jax.random.normal(jax.random.key(1), (3, 5, n))
  y = jax.random.normal(jax.random.key(2), (3, 5, 2))
  # Overwriting the readout sets D x to y and leaves the null-space component alone.
  x_new = network.set_readout(variables, x, y)
  np.testing.assert_allclose(network.readout(variables, x_new), y, atol=1e-5)
  d = variables['constants']['readout']
  null = jnp.eye(n) - d.T @ d
  np.testing.assert_allclose(x_new @ null, x @ null, atol=1e-5)
  # The mean step is the leaky update.
  drive = jnp.zeros((network.model.cell.drive_size,))
  f = network.model.apply(variables, x, drive, method=rnn.DiffusionRNN.recurrent)
  np.testing.assert_allclose(network.mean_step(variables, x, drive), 0.9 * x + 0.1 * f,
                             rtol=1e-5, atol=1e-6)
  displays = task.sample_displays(jax.random.key(3), 3, 2, cue_grid=8)
  inputs = task.epoch_inputs_from_config(displays, tiny_config.task)
  responses, trajectory = network.sample(variables, inputs, jax.random.key(4), 7, record=True)
  assert responses.shape == (3, 7)
  assert trajectory.shape == (network.epochs.total, 3, 7, n)
  assert float(jnp.abs(responses).max()) <= np.pi
  # The response is the angle of the final readout.
  final = network.readout(variables, trajectory[-1])
  np.testing.assert_allclose(jnp.cos(responses), final[..., 0] / jnp.linalg.norm(final, axis=-1),
                             atol=1e-4)


def test_sampling_is_reproducible_from_key(tiny_config):
  network = rnn.make_network(tiny_config)
  variables = tiny.init_network(network, tiny_config.task)
  displays = task.sample_displays(jax.random.key(3), 2, 2)
  inputs = task.epoch_inputs_from_config(displays, tiny_config.task)
  sample = jax.jit(lambda key: network.sample(variables, inputs, key, 4)[0])
  a, b, c = (sample(jax.random.key(k)) for k in (5, 5, 6))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_dendritic_cell_matches_its_formula():
  cell = rnn.DendriticCell(num_units=3, num_branches=2, num_subbranches=4)
  x = jax.random.normal(jax.random.key(0), (5, 3))
  drive = jax.random.normal(jax.random.key(1), (5, 24))
  params = cell.init(jax.random.key(2), x, drive)['params']
  out = cell.apply({'params': params}, x, drive)
  sp = jax.nn.softplus
  leaves = sp(x @ params['leaf_kernel'] + drive).reshape(5, 3, 2, 4)
  branches = sp(jnp.einsum('kibs,ibs->kib', leaves, params['subbranch_weights'])
                + params['branch_bias'])
  expected = jnp.einsum('kib,ib->ki', branches, params['branch_weights']) + params['unit_bias']
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def _cell_params(cell, x, drive):
  params = cell.init(jax.random.key(2), x, drive)['params']
  # Negative unit biases, so that a linear soma certainly goes below zero somewhere.
  return dict(params, unit_bias=params['unit_bias'] - 3.0)


def test_softplus_soma_is_nonnegative_and_the_linear_one_is_not():
  x = 3.0 * jax.random.normal(jax.random.key(0), (50, 3))
  drive = jax.random.normal(jax.random.key(1), (50, 24))
  linear = rnn.DendriticCell(num_units=3, num_branches=2, num_subbranches=4)
  soft = rnn.DendriticCell(num_units=3, num_branches=2, num_subbranches=4, soma='softplus')
  params = _cell_params(linear, x, drive)
  f_linear = linear.apply({'params': params}, x, drive)
  f_soft = soft.apply({'params': params}, x, drive)
  assert float(f_linear.min()) < 0
  assert float(f_soft.min()) >= 0
  np.testing.assert_allclose(f_soft, jax.nn.softplus(f_linear), rtol=1e-5, atol=1e-6)


def test_time_signal_at_every_level_matches_its_formula():
  n, b, s = 3, 2, 4
  cell = rnn.DendriticCell(num_units=n, num_branches=b, num_subbranches=s, time_levels='all',
                           soma='softplus')
  assert cell.leaf_drive_size == n * b * s and cell.drive_size == n * b * s + n * b + n
  x = jax.random.normal(jax.random.key(0), (5, n))
  drive = jax.random.normal(jax.random.key(1), (5, cell.drive_size))
  params = cell.init(jax.random.key(2), x, drive)['params']
  out = cell.apply({'params': params}, x, drive)
  sp = jax.nn.softplus
  leaf_drive, branch_drive, soma_drive = jnp.split(drive, [n * b * s, n * b * s + n * b], -1)
  leaves = sp(x @ params['leaf_kernel'] + leaf_drive).reshape(5, n, b, s)
  branches = sp(jnp.einsum('kibs,ibs->kib', leaves, params['subbranch_weights'])
                + params['branch_bias'] + branch_drive.reshape(5, n, b))
  expected = sp(jnp.einsum('kib,ib->ki', branches, params['branch_weights'])
                + params['unit_bias'] + soma_drive)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_time_drive_reaches_every_level_and_inputs_only_the_leaves(tiny_config):
  tiny_config.model.cell = 'dendritic'
  tiny_config.model.time_levels = 'all'
  network = rnn.make_network(tiny_config)
  variables = tiny.init_network(network, tiny_config.task)
  cell = network.model.cell
  displays = task.sample_displays(jax.random.key(3), 2, 2, cue_grid=8)
  inputs = task.epoch_inputs_from_config(displays, tiny_config.task)
  epoch_drives, response_drives = network.drives(variables, inputs)
  assert epoch_drives.shape[-1] == response_drives.shape[-1] == cell.drive_size
  trial_constant = variables['params']['trial_time_drive']
  # Above the leaves the trial drive is the time constant alone, whatever the input.
  np.testing.assert_array_equal(epoch_drives[..., cell.leaf_drive_size:],
                                jnp.broadcast_to(trial_constant[cell.leaf_drive_size:],
                                                 epoch_drives[..., cell.leaf_drive_size:].shape))
  assert float(jnp.abs(response_drives[:, cell.leaf_drive_size:]).max()) > 0


def _factorised_network(config):
  config.task.cue_input = 'conjunctive'
  config.model.input_projection = 'factorised'
  config.model.feature_projection_size = 3
  network = rnn.make_network(config)
  return network, tiny.init_network(network, config.task)


def test_conjunctive_cue_goes_through_the_stimulus_projection(tiny_config):
  network, variables = _factorised_network(tiny_config)
  params = variables['params']
  assert 'cue_channel_projection' not in params      # The cue has no channel of its own.
  m = tiny_config.task.num_tuning
  displays = task.sample_displays(jax.random.key(3), 4, 2, cue_grid=8)
  inputs = task.epoch_inputs_from_config(displays, tiny_config.task)
  drives, _ = network.drives(variables, inputs)
  cue_drive = drives[task.EPOCH_NAMES.index('cue')] - params['trial_time_drive']
  # The stimulus's projection: Z = (X K_r)^T K_c, then vec(Z) W, for X = code(c_k) (x) 1.
  k_r = params['report_feature_projection']['kernel']             # (M_r, f)
  k_c = params['cue_feature_projection']['kernel']                # (M_c, f)
  w = params['input_projection']['kernel']                        # (f * f, leaves)
  code = circular.von_mises_code(displays.cued_cue(), m, tiny_config.task.tuning_concentration)
  x = jnp.einsum('km,l->kml', code, jnp.ones(m))
  z = jnp.einsum('kml,lf,mg->kfg', x, k_r, k_c)
  np.testing.assert_allclose(cue_drive, z.reshape(4, -1) @ w, rtol=1e-4, atol=1e-5)
  # ... which is the same map the stimulus epoch's conjunctive code goes through.
  stim = inputs[0, :, :m * m].reshape(4, m, m)
  stim_drive = drives[0] - params['trial_time_drive']
  np.testing.assert_allclose(
      stim_drive, jnp.einsum('kml,lf,mg->kfg', stim, k_r, k_c).reshape(4, -1) @ w,
      rtol=1e-4, atol=1e-5)


def test_factorised_projection_keeps_a_separate_cue_channel_when_asked(tiny_config):
  tiny_config.model.input_projection = 'factorised'
  network = rnn.make_network(tiny_config)
  variables = tiny.init_network(network, tiny_config.task)
  assert 'cue_channel_projection' in variables['params']
  tiny_config.task.cueing = 'index'
  with pytest.raises(ValueError, match='probe'):
    rnn.make_network(tiny_config)


def test_half_normal_initial_state_distribution_and_sampler_start(tiny_config):
  tiny_config.model.initial_state = 'half_normal'
  network = rnn.make_network(tiny_config)
  scale = float(jnp.sqrt(network.schedule.prior_variance))
  x0 = network.initial_states(jax.random.key(7), 400, 50)
  assert x0.shape == (400, 50, tiny_config.model.num_units)
  assert float(x0.min()) >= 0
  per_unit = np.asarray(jnp.mean(x0, axis=(0, 1)))
  np.testing.assert_allclose(per_unit, np.sqrt(2 / np.pi) * scale, rtol=0.02)
  np.testing.assert_allclose(np.asarray(jnp.std(x0, axis=(0, 1))),
                             np.sqrt(1 - 2 / np.pi) * scale, rtol=0.03)
  # Independent per trial and unit; a different key, a different draw.
  assert abs(float(jnp.corrcoef(x0[..., 0].ravel(), x0[..., 1].ravel())[0, 1])) < 0.02
  assert not np.allclose(x0, network.initial_states(jax.random.key(8), 400, 50))
  # The sampler starts from it: with no trial noise the first state is one mean step from x0.
  tiny_config.model.trial_noise = 0.0
  network = rnn.make_network(tiny_config)
  variables = tiny.init_network(network, tiny_config.task)
  displays = task.sample_displays(jax.random.key(3), 3, 2, cue_grid=8)
  inputs = task.epoch_inputs_from_config(displays, tiny_config.task)
  key = jax.random.key(4)
  _, trajectory = network.sample(variables, inputs, key, 5, record=True)
  drives, _ = network.drives(variables, inputs)
  x0 = network.initial_states(key, 3, 5)
  np.testing.assert_allclose(trajectory[0], network.mean_step(variables, x0, drives[0][:, None]),
                             rtol=1e-5, atol=1e-6)
  zeros = dataclasses.replace(network, initial_state='zeros')
  np.testing.assert_array_equal(zeros.initial_states(key, 3, 5), 0.0)
