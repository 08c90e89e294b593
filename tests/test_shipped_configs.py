"""Every config file the package ships loads as the command line loads it and passes the checks
of the mode it is for, so a config edited into an invalid state fails here, not in a user's run.
"""

import os

import numpy as np
import pytest

from rnn_behaviour import config_validation
from rnn_behaviour import main
from rnn_behaviour import parallel
from rnn_behaviour.behaviour import fit_config
from rnn_behaviour.lab_report import stages
from tests import conftest

CONFIG_DIR = os.path.join(conftest.REPO_ROOT, 'rnn_behaviour', 'configs')
# Modules there that are not run configs: the choices' names and the paper's targets.
NOT_RUN_CONFIGS = ('__init__.py', 'choices.py', 'paper_targets.py')
RUN_CONFIGS = sorted(name for name in os.listdir(CONFIG_DIR)
                     if name.endswith('.py') and name not in NOT_RUN_CONFIGS)


def test_every_config_file_is_listed():
  assert {'default.py', 'tiny.py', 'paper.py', 'authors.py', 'panichello_buschman.py',
          'report.py', 'fit_csv.py', 'fit_bays2009.py', 'bays2009_pipeline.py'} <= set(
              RUN_CONFIGS)


@pytest.mark.parametrize('name', RUN_CONFIGS)
def test_shipped_config_is_valid(name):
  config = main.load_config_file(os.path.join(CONFIG_DIR, name))
  if 'report' in config:
    stages.validate(config)
  if 'fit' in config:
    fit_config.validate_config(config)
  if 'model' in config:
    config_validation.validate(config)
    parallel.validate(config)


def test_the_monkey_task_is_retro_cued_by_index_with_a_flat_swap_rate():
  config = main.load_config_file(os.path.join(CONFIG_DIR, 'panichello_buschman.py'))
  assert config.task.num_items == 2 and config.task.cueing == 'index'
  assert config.model.trial_noise < 0            # The paper's preparatory noise.
  b = config.behaviour
  assert b.source == 'parametric' and b.swap_kind == 'flat'
  # Mixture weights of a two-item display: guess e^u, target 1, the other item e^b.
  guess, swap = np.exp(b.guess_logit), np.exp(b.swap_bias)
  np.testing.assert_allclose(swap / (guess + 1.0 + swap), 0.10, rtol=1e-9)
  assert guess / (guess + 1.0 + swap) < 1e-4       # No guesses, to the method's precision.
