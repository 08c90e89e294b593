"""Shared test fixtures: tiny configs that run the real code in seconds."""

import os

import pytest

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=1')

from rnn_behaviour.configs import default  # pylint: disable=g-import-not-at-top

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO_ROOT, '..', 'shared', 'data')


def make_tiny_config():
  config = default.get_config()
  config.task.epochs.stimulus = 2
  config.task.epochs.delay = 3
  config.task.epochs.cue = 2
  config.task.epochs.post_cue = 1
  config.task.num_tuning = 8
  config.model.num_units = 8
  config.model.trial_noise = -1.0    # The paper's trial noise, so every noise path runs.
  config.model.num_branches = 2
  config.model.num_subbranches = 3
  config.diffusion.num_steps = 6
  config.train.num_steps = 4
  config.train.displays_per_batch = 4
  config.train.samples_per_display = 4
  config.train.warmup_steps = 1
  config.train.log_every = 1
  config.train.checkpoint_every = 2
  config.eval.num_displays = 8
  config.eval.samples_per_display = 16
  config.eval.num_plot_displays = 2
  config.eval.bns_svi_steps = 100
  return config


@pytest.fixture
def tiny_config():
  return make_tiny_config()
