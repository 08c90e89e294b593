"""Curricula: stages chained through init_from, resumable, finished stages not rerun; the
paper's chains and targets as configs."""

import importlib.util
import json
import os

import ml_collections
import numpy as np
import pytest

from rnn_behaviour import curriculum
from rnn_behaviour import task as task_lib
from rnn_behaviour import train
from rnn_behaviour.behaviour import parametric
from rnn_behaviour.configs import paper_targets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = dict(
    task=dict(num_tuning=8, epochs=dict(stimulus=2, delay=3, cue=2, post_cue=1)),
    model=dict(num_units=8), diffusion=dict(num_steps=6),
    train=dict(num_steps=2, displays_per_batch=4, samples_per_display=4, warmup_steps=1,
               log_every=1, checkpoint_every=2))


def _tiny_curriculum():
  config = ml_collections.ConfigDict()
  config.base = 'default'
  config.overrides = TINY
  config.stages = (
      dict(name='first', overrides=dict(objective=dict(name='task_optimal'))),
      dict(name='second', overrides=dict(behaviour=dict(swap_kind='flat'))),
      dict(name='branch', start_from='first', overrides=dict(train=dict(num_steps=3))),
      dict(name='fresh', start_from='scratch', overrides={}),
  )
  return config


@pytest.mark.slow   # Three trainings (~28 s). Fast twins: tests/test_criteria.py's chain tests
# (curriculum.run over two tiny stages, skipped when finished).
def test_stages_chain_and_are_not_rerun(tmp_path):
  config = _tiny_curriculum()
  workdir = str(tmp_path / 'chain')
  dirs = curriculum.run(config, workdir, stages=['second', 'branch'])
  assert set(dirs) == {'first', 'second', 'branch'}       # 'fresh' was not asked for.

  def source(name):
    with open(os.path.join(dirs[name], 'config.json')) as f:
      return json.load(f).get('initialised_from', {}).get('workdir')

  assert source('first') is None
  assert source('second') == os.path.abspath(dirs['first'])
  assert source('branch') == os.path.abspath(dirs['first'])
  _, first = train.load_trained(curriculum.stage_config(config, 'first', workdir), dirs['first'])
  _, branch = train.load_trained(curriculum.stage_config(config, 'branch', workdir),
                                 dirs['branch'])
  np.testing.assert_array_equal(first.constants['readout'], branch.constants['readout'])
  assert int(branch.step) == 3
  stamp = os.path.getmtime(os.path.join(dirs['second'], 'metrics.jsonl'))
  curriculum.run(config, workdir, stages=['second'])
  assert os.path.getmtime(os.path.join(dirs['second'], 'metrics.jsonl')) == stamp


def test_bad_curricula_fail_clearly():
  config = _tiny_curriculum()
  config.stages = (dict(name='a', overrides={}), dict(name='b', start_from='c', overrides={}))
  with pytest.raises(ValueError, match="start_from='c' is not an earlier stage"):
    curriculum.stage_sources(config)
  with pytest.raises(KeyError, match="'nonsense' is not a field"):
    curriculum.merge_overrides(curriculum.base_config('default'), {'nonsense': 1})


def test_paper_targets():
  displays = task_lib.sample_displays(__import__('jax').random.key(0), 4096, 2)
  for name, rate in (('flat_0.05', 0.05), ('flat_0.10', 0.10)):
    c = curriculum.base_config('default')
    c.behaviour.update(paper_targets.target(name))
    weights = parametric.from_config(c.behaviour).mixture_weights(displays)
    swap = np.asarray(weights[:, 1:])[np.asarray(task_lib.nontarget_mask(displays))]
    np.testing.assert_allclose(swap, rate, rtol=1e-4)
  smooth = curriculum.base_config('default')
  smooth.behaviour.update(paper_targets.target('smooth'))
  model = parametric.from_config(smooth.behaviour)
  np.testing.assert_allclose(model.swap_logit(np.array([0.0, np.pi])),
                             [-2.0, -np.pi**2 / 3 - 2.0], rtol=1e-6)


@pytest.mark.parametrize('name,first,last', [('curriculum_probe', 'task_optimal_short',
                                              'moment_matching'),
                                             ('curriculum_index', 'no_swaps', 'swap_0.10')])
@pytest.mark.parametrize('scale', ['cpu', 'paper'])
def test_paper_chains_build_valid_configs(name, first, last, scale, tmp_path):
  from rnn_behaviour import config_validation
  path = os.path.join(REPO, 'experiments', 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(scale)
  names = [s['name'] for s in config.stages]
  assert names[0] == first and names[-1] == last
  for stage in names:
    stage_config = curriculum.stage_config(config, stage, str(tmp_path))
    stage_config.train.init_from = ''                     # The sources are not trained here.
    config_validation.validate(stage_config)
    assert stage_config.train.ensemble_size == 3
