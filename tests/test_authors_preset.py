"""The authors' training options (issue 20 item 2) and the preset that turns them on.

The first test pins today's numbers: with every option at its default, the loss on a fixed batch
and the sampler's responses equal, bit for bit on the CPU, the values the code gave before the
options existed (recorded at commit aa82ff9).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import objectives
from rnn_behaviour import rnn
from rnn_behaviour import task
from rnn_behaviour import train
from rnn_behaviour.behaviour import parametric

# (loss on the fixed batch, sum of 3 x 5 sampled responses), as float.hex(), from aa82ff9.
_BEFORE = {
    'default': ('0x1.63c0f20000000p-3', '0x1.30678a0000000p+0'),
    'dendritic_regularise': ('0x1.6d74180000000p+0', '0x1.370a8a0000000p+1'),
    'task_optimal': ('0x1.db1fc00000000p+2', '0x1.30678a0000000p+0'),
    'moment_matching': ('0x1.a9c96a0000000p+0', '0x1.30678a0000000p+0'),
}


def fixed_batch_values(config):
  """(loss, sum of sampled responses) of a freshly initialised network on fixed keys."""
  network = rnn.make_network(config)
  variables = network.init(jax.random.key(0), train.input_size(config.task))
  batch = objectives.sample_batch(jax.random.key(1), config,
                                  parametric.from_config(config.behaviour))
  loss, _ = jax.jit(objectives.make_loss_fn(config, network))(
      variables['params'], variables['constants'], batch, jax.random.key(2))
  displays = task.sample_displays(jax.random.key(3), 3, 2, cue_grid=8)
  inputs = task.epoch_inputs_from_config(displays, config.task)
  responses, _ = jax.jit(lambda v, i, k: network.sample(v, i, k, 5, onset=config.diffusion.onset))(
      variables, inputs, jax.random.key(4))
  return float(loss), float(jnp.sum(responses))


@pytest.mark.parametrize('case', sorted(_BEFORE))
def test_defaults_reproduce_the_numbers_from_before_the_options(tiny_config, case):
  if case == 'dendritic_regularise':
    tiny_config.model.cell = 'dendritic'
    tiny_config.diffusion.onset = 'regularise'
    tiny_config.diffusion.response_noise = 'all'
  elif case in ('task_optimal', 'moment_matching'):
    tiny_config.objective.name = case
  values = fixed_batch_values(tiny_config)
  expected = tuple(float.fromhex(h) for h in _BEFORE[case])
  if jax.default_backend() == 'cpu':
    assert values == expected, (values, expected)
  else:  # Another backend's kernels round differently.
    np.testing.assert_allclose(values, expected, rtol=1e-4)
