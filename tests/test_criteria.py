"""Stages that end when learned: the selection criterion, its record and learning curve, a
chain that stops at a stage that did not learn, and the authors' optimiser options."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from rnn_behaviour import criteria
from rnn_behaviour import curriculum
from rnn_behaviour import task as task_lib
from rnn_behaviour import train
from tests import conftest

TINY = dict(
    task=dict(num_tuning=8, cue_grid=0, epochs=dict(stimulus=2, delay=3, cue=2, post_cue=1)),
    model=dict(num_units=8), diffusion=dict(num_steps=6),
    train=dict(num_steps=6, displays_per_batch=4, samples_per_display=4, warmup_steps=1,
               log_every=1, checkpoint_every=100))
FAST_CHECK = dict(num_displays=8, samples_per_display=4, check_every=2, min_steps=2)


def _chain(first_tolerance, continue_unlearned=False):
  config = ml_collections.ConfigDict()
  config.base = 'default'
  config.overrides = TINY
  config.criteria = FAST_CHECK
  config.continue_unlearned = continue_unlearned
  config.stages = (
      dict(name='first', overrides=dict(objective=dict(name='task_optimal')),
           criterion=dict(tolerance=first_tolerance)),
      dict(name='second', overrides=dict(behaviour=dict(swap_kind='flat')),
           criterion=dict(tolerance=1.0)),
  )
  return config


def _displays(report, cued, cue=None):
  report = np.asarray(report, np.float32)
  cue = np.asarray(cue if cue is not None else [[0.0, np.pi / 2]] * len(report), np.float32)
  return task_lib.Displays(cue=cue, report=report, cued=np.asarray(cued, np.int32))


def test_swap_rates_known_answers():
  displays = _displays([[0.0, 2.0], [1.0, -1.0]], [0, 1],
                       cue=[[0.0, 0.9], [0.0, 3.0]])    # Cue distances 0.9 and 3.0.
  responses = np.array([[0.1, 1.9, 0.0, 2.1],          # Display 0: 2 swaps of 4.
                        [-1.0, -1.1, -0.9, -1.0]])     # Display 1: none (cued item 1).
  edges = np.linspace(np.pi / 4, np.pi, 3)             # Bins [0.79, 1.96), [1.96, 3.14].
  overall, by_bin = criteria.swap_rates(responses, displays, edges)
  assert overall == pytest.approx(0.25)
  np.testing.assert_allclose(by_bin, [0.5, 0.0])
  # A leading member axis is kept.
  overall, by_bin = criteria.swap_rates(np.stack([responses, responses * 0 + 2.0]), displays,
                                        edges)
  np.testing.assert_allclose(overall, [0.25, 1.0])   # 2.0 is nearest a non-target in both.
  assert by_bin.shape == (2, 2)


def test_settings_fail_naming_the_field():
  with pytest.raises(KeyError, match='tolerence'):
    criteria.settings_for(dict(tolerence=0.1))
  with pytest.raises(ValueError, match='members'):
    criteria.settings_for(dict(members=0.0))
  assert criteria.required_members(criteria.settings_for(dict(members=2 / 3)), 3) == 2


@pytest.fixture(scope='session')
def met_chain(tmp_path_factory):
  """(config, workdir) of `_chain(first_tolerance=1.0)` run once: its criterion is always met,
  so the first stage ends at min_steps. Read-only: copy it to change it."""
  config = _chain(first_tolerance=1.0)
  return config, conftest.built_once(tmp_path_factory, 'met_chain',
                                     lambda workdir: curriculum.run(config, workdir))


def test_stage_ends_when_learned_and_records_it(met_chain):
  config, workdir = met_chain
  dirs = {name: os.path.join(workdir, name) for name in ('first', 'second')}
  record = criteria.read_record(dirs['first'])
  assert record['met'] and record['met_step'] == 2 and record['budget'] == 6
  assert record['members'][0]['learned'] is True
  _, first = train.load_trained(curriculum.stage_config(config, 'first', workdir), dirs['first'])
  assert int(first.step) == 2                   # Stopped early, its checkpoint at the stop.
  curve = criteria.read_curve(dirs['first'])
  assert [r['step'] for r in curve] == [2]
  assert os.path.exists(os.path.join(dirs['first'], criteria.CURVE_PNG))
  with open(os.path.join(dirs['second'], 'config.json')) as f:
    assert json.load(f)['initialised_from']['workdir'] == os.path.abspath(dirs['first'])


def test_a_finished_chain_is_not_retrained(met_chain, tmp_path):
  config, source = met_chain
  workdir = conftest.copy_run(source, tmp_path / 'chain')
  record = os.path.join(workdir, 'second', criteria.RECORD_FILE)
  stamp = os.path.getmtime(record)
  dirs = curriculum.run(config, workdir)
  assert dirs['second'] == os.path.join(workdir, 'second')
  assert os.path.getmtime(record) == stamp


def test_chain_stops_at_a_stage_that_did_not_learn(tmp_path):
  workdir = str(tmp_path / 'chain')
  with pytest.raises(curriculum.StageNotLearned, match="stage 'first' did not meet"):
    curriculum.run(_chain(first_tolerance=-1.0), workdir)   # Never met.
  record = criteria.read_record(os.path.join(workdir, 'first'))
  assert not record['met'] and record['last_step'] == 6
  assert [r['step'] for r in criteria.read_curve(os.path.join(workdir, 'first'))] == [2, 4, 6]
  assert not os.path.exists(os.path.join(workdir, 'second'))
  # Going on anyway marks what follows.
  dirs = curriculum.run(_chain(first_tolerance=-1.0, continue_unlearned=True), workdir)
  assert criteria.read_record(dirs['second'])['after_unlearned'] == ['first']


def test_constant_schedule_and_carried_optimiser(tmp_path, tiny_config):
  config = tiny_config
  config.train.schedule = 'constant'
  config.train.warmup_steps = 0
  config.train.grad_clip = 0.0
  schedule = train.learning_rate_schedule(config.train)
  assert float(schedule(0)) == float(schedule(10_000)) == config.train.learning_rate
  source = str(tmp_path / 'source')
  config.train.checkpoint_every = 4
  train.train(config, source)
  _, trained = train.load_trained(config, source)
  follow = ml_collections.ConfigDict(config.to_dict())
  follow.train.init_from = source
  follow.train.init_optimizer = True
  follow.diffusion.num_steps = 4                    # T may change between stages.
  built = train.build(follow, behaviour_model=False)
  state = train.init_states(built, train.member_seeds(follow))
  carried, record = train.initialise_from(follow, state, built.tx)
  assert record['optimiser_carried']
  for a, b in zip(jax.tree_util.tree_leaves(carried.opt_state),
                  jax.tree_util.tree_leaves(trained.opt_state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # A different optimiser chain cannot carry the state.
  follow.train.grad_clip = 1.0
  built = train.build(follow, behaviour_model=False)
  with pytest.raises(ValueError, match='init_optimizer'):
    train.initialise_from(follow, train.init_states(built, [0]), built.tx)


def test_analysis_marks_a_network_that_did_not_learn(trained_run):
  from rnn_behaviour.analysis import run_paper  # pylint: disable=g-import-not-at-top
  config = train.load_run_config(trained_run)
  _, state = train.load_trained(config, trained_run)
  status = run_paper.selection_status(config, trained_run, state, [None])
  assert int(state.step) < run_paper.MIN_TRAINED_STEPS
  assert status[0]['learned'] is False
  assert 'did not learn cue selection' in status[0]['warning']
  assert status[0]['criterion'] == 'measured at analysis'
