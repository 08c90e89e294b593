"""Cells, the network's pure steps and the unrolled trial."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import rnn
from rnn_behaviour import task
from rnn_behaviour import train


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
  variables = network.init(jax.random.key(0), train.input_size(tiny_config.task))
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
  variables = network.init(jax.random.key(0), train.input_size(tiny_config.task))
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
