"""The authors' training options (issue 20 item 2) and the preset that turns them on.

The first test pins today's numbers: with every option at its default, the loss on a fixed batch
and the sampler's responses equal the values the code gave before the options existed (recorded
at commit aa82ff9): to float32 rounding under the test session's cheap XLA code generation, and
bit for bit on the CPU in the slow twin, which compiles as users' runs do.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import objectives
from rnn_behaviour import rnn
from rnn_behaviour import sampling
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


def fixed_batch_values(config, sample: bool = True):
  """(loss, sum of sampled responses or None) of a freshly initialised network on fixed keys."""
  network = rnn.make_network(config)
  variables = network.init(jax.random.key(0), train.input_size(config.task))
  batch = objectives.sample_batch(jax.random.key(1), config,
                                  parametric.from_config(config.behaviour))
  loss, _ = jax.jit(objectives.make_loss_fn(config, network))(
      variables['params'], variables['constants'], batch, jax.random.key(2))
  if not sample:
    return float(loss), None
  displays = task.sample_displays(jax.random.key(3), 3, 2, cue_grid=8)
  inputs = task.epoch_inputs_from_config(displays, config.task)
  sample = sampling.make_sampler(config, network)
  responses = jax.jit(lambda v, i, k: sample(v, i, k, 5))(variables, inputs, jax.random.key(4))
  return float(loss), float(jnp.sum(responses))


def case_config(case: str):
  """The tiny config set up as one of _BEFORE's cases."""
  from tests import conftest  # pylint: disable=g-import-not-at-top
  config = conftest.make_tiny_config()
  if case == 'dendritic_regularise':
    config.model.cell = 'dendritic'
    config.diffusion.onset = 'regularise'
    config.diffusion.response_noise = 'all'
  elif case in ('task_optimal', 'moment_matching'):
    config.objective.name = case
  return config


def _fast_compile() -> bool:
  """Whether this process compiles with tests/conftest.py's cheap code generation."""
  from tests import conftest  # pylint: disable=g-import-not-at-top
  return any(f in os.environ.get('XLA_FLAGS', '') for f in conftest.FAST_COMPILE_FLAGS)


@pytest.mark.parametrize('case', sorted(_BEFORE))
def test_defaults_reproduce_the_numbers_from_before_the_options(case):
  values = fixed_batch_values(case_config(case))
  expected = tuple(float.fromhex(h) for h in _BEFORE[case])
  if jax.default_backend() == 'cpu' and not _fast_compile():
    assert values == expected, (values, expected)
  else:  # XLA's cheap code generation, or another backend's kernels, round differently.
    cpu = jax.default_backend() == 'cpu'
    np.testing.assert_allclose(values, expected, rtol=2e-6 if cpu else 1e-4,
                               atol=1e-5 if cpu else 0.0)


@pytest.mark.slow
def test_defaults_reproduce_the_numbers_bit_for_bit_without_fast_compilation():
  """The fast test's numbers to the last bit, in a process that compiles as users' runs do."""
  script = ('import json; from tests import test_authors_preset as t; print(json.dumps('
            '{c: [float.hex(v) for v in t.fixed_batch_values(t.case_config(c))] '
            'for c in sorted(t._BEFORE)}))')
  from tests import conftest  # pylint: disable=g-import-not-at-top
  fast = tuple(f.split('=')[0] for f in conftest.FAST_COMPILE_FLAGS)
  flags = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split()
                   if f.split('=')[0] not in fast)
  env = dict(os.environ, RNN_BEHAVIOUR_TEST_FAST_COMPILE='0', XLA_FLAGS=flags,
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', script], cwd=conftest.REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got == {c: [float.hex(float.fromhex(h)) for h in _BEFORE[c]] for c in _BEFORE}


# --- the preset and the options' validation -------------------------------------------------

_AUTHORS_VALUES = {
    'task.cue_input': 'conjunctive', 'model.input_projection': 'factorised',
    'model.feature_projection_size': 6, 'model.soma': 'softplus', 'model.time_levels': 'all',
    'model.initial_state': 'half_normal', 'diffusion.response_noise': 'all',
    'diffusion.onset': 'regularise', 'diffusion.onset_penalty': 'mean_norm',
    'diffusion.onset_weight': 0.001, 'objective.denoise_scale': 50.0,
    'objective.state_penalty': 'mean_norm', 'objective.state_weight': 1e-5,
}
_AUTHORS_TRAIN = {'train.schedule': 'constant', 'train.learning_rate': 1e-3,
                  'train.warmup_steps': 0, 'train.grad_clip': 0.0, 'train.init_optimizer': True}


def _get(config, field):
  section, name = field.split('.')
  return config[section][name]


def test_authors_config_is_the_paper_sizes_with_every_option_on():
  from rnn_behaviour import config_validation  # pylint: disable=g-import-not-at-top
  from rnn_behaviour.configs import authors, paper  # pylint: disable=g-import-not-at-top
  config = authors.get_config()
  config_validation.validate(config)
  for field, value in _AUTHORS_VALUES.items():
    assert _get(config, field) == value, field
  for field, value in _AUTHORS_TRAIN.items():
    if field.split('.')[1] in config.train:   # The train block's issue-20 fields.
      assert _get(config, field) == value, field
  base = paper.get_config()
  assert (config.model.cell, config.model.num_units) == ('dendritic', 16)
  assert (config.train.displays_per_batch, config.train.samples_per_display) == (32, 512)
  assert config.model.trial_noise == base.model.trial_noise
  assert config.objective.name == base.objective.name          # The stage chooses it.


def test_apply_authors_options_on_a_cpu_sized_rate_config(tiny_config):
  from rnn_behaviour import config_validation  # pylint: disable=g-import-not-at-top
  from rnn_behaviour.configs import authors  # pylint: disable=g-import-not-at-top
  config = authors.apply_authors_options(tiny_config)
  config_validation.validate(config)
  # A rate cell keeps its (dendritic-only) soma and time options at their defaults.
  assert (config.model.soma, config.model.time_levels) == ('linear', 'leaves')
  assert config.model.initial_state == 'half_normal' and config.task.cue_input == 'conjunctive'
  index = authors.apply_authors_options(_tiny_index())
  config_validation.validate(index)
  assert (index.task.cue_input, index.model.input_projection) == ('channel', 'dense')


def _tiny_index():
  from tests import conftest  # pylint: disable=g-import-not-at-top
  config = conftest.make_tiny_config()
  config.task.cueing = 'index'
  config.model.cell = 'dendritic'
  return config


@pytest.mark.parametrize('field,value', [
    ('task.cue_input', 'shared'), ('model.soma', 'relu'), ('model.time_levels', 'branches'),
    ('model.input_projection', 'bilinear'), ('model.feature_projection_size', 0),
    ('model.initial_state', 'normal'), ('diffusion.onset_penalty', 'norm'),
    ('objective.state_penalty', 'l1'), ('objective.denoise_scale', -1.0),
    ('objective.name', 'rnn')])
def test_a_bad_option_fails_naming_its_field(tiny_config, field, value):
  from rnn_behaviour import config_validation  # pylint: disable=g-import-not-at-top
  section, name = field.split('.')
  tiny_config[section][name] = value
  with pytest.raises(config_validation.ConfigError, match=f'config.{field}'):
    config_validation.validate(tiny_config)


@pytest.mark.parametrize('field,value', [('model.soma', 'softplus'), ('model.time_levels', 'all'),
                                         ('task.cue_input', 'conjunctive'),
                                         ('model.input_projection', 'factorised')])
def test_an_option_that_does_not_apply_fails_naming_its_field(tiny_config, field, value):
  from rnn_behaviour import config_validation  # pylint: disable=g-import-not-at-top
  section, name = field.split('.')
  tiny_config[section][name] = value
  if section == 'task' or name == 'input_projection':
    tiny_config.task.cueing = 'index'     # Probe cueing's options.
  else:
    tiny_config.model.cell = 'rate'       # Dendritic cell's options.
  with pytest.raises(config_validation.ConfigError, match=f'config.{field}'):
    config_validation.validate(tiny_config)


@pytest.mark.parametrize('name', ['diffusion', 'free_running'])
def test_every_option_on_gives_a_finite_loss_and_gradient(name):
  """All the authors' options together on the tiny dendritic network, for both of their
  objectives."""
  from rnn_behaviour.configs import authors  # pylint: disable=g-import-not-at-top
  config = authors.apply_authors_options(_dendritic(name))
  network = rnn.make_network(config)
  variables = network.init(jax.random.key(0), train.input_size(config.task))
  batch = objectives.sample_batch(jax.random.key(1), config,
                                  parametric.from_config(config.behaviour))
  (loss, metrics), grads = jax.jit(jax.value_and_grad(objectives.make_loss_fn(config, network),
                                                      has_aux=True))(
      variables['params'], variables['constants'], batch, jax.random.key(2))
  assert np.isfinite(float(loss)) and {'onset', 'state_norm'} <= set(metrics)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert sum(float(jnp.sum(g**2)) for g in leaves) > 0


def test_half_normal_initial_state_changes_the_training_loss(tiny_config):
  """The loss's trials start from the initial state too (not only the sampler's)."""
  base = fixed_batch_values(tiny_config, sample=False)[0]
  tiny_config.model.initial_state = 'half_normal'
  assert fixed_batch_values(tiny_config, sample=False)[0] != base


@pytest.mark.slow
def test_each_option_alone_changes_the_loss():
  """Each option set alone, by its own field, moves the diffusion loss off the default's."""
  base = fixed_batch_values(_dendritic('diffusion'), sample=False)[0]
  for field, value in _AUTHORS_VALUES.items():
    if field in ('model.feature_projection_size', 'diffusion.onset_weight',
                 'diffusion.onset_penalty'):
      continue   # Only meaningful with another option (input_projection, onset='regularise').
    config = _dendritic('diffusion')
    section, name = field.split('.')
    config[section][name] = value
    if field == 'diffusion.onset':
      config.diffusion.onset_penalty = 'mean_norm'
    assert fixed_batch_values(config, sample=False)[0] != base, field


def _dendritic(objective):
  from tests import conftest  # pylint: disable=g-import-not-at-top
  config = conftest.make_tiny_config()
  config.model.cell = 'dendritic'
  config.objective.name = objective
  return config
