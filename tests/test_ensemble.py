"""Seed ensembles in one program, and runs initialised from another run (curriculum stages)."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import evaluate
from rnn_behaviour import train


def _leaves(tree):
  return [np.asarray(p) for p in jax.tree_util.tree_leaves(tree)]


def test_ensemble_members_equal_standalone_runs(tiny_config, trained_ensemble, trained_run,
                                                tmp_path):
  tiny_config.train.ensemble_size = 2
  ensemble_dir = trained_ensemble          # 4 steps, seeds 0 and 1 (conftest).
  for member in range(2):
    single = tiny_config.copy_and_resolve_references()
    single.train.ensemble_size = 1
    single.seed = tiny_config.seed + member
    if member == 0:
      single_dir = trained_run             # The tiny config, seed 0, 4 steps.
    else:
      single_dir = str(tmp_path / f'seed_{member}')
      train.train(single, single_dir)
    expected = train.read_metrics(single_dir)
    got = train.read_metrics(ensemble_dir, member=member)
    assert [r['step'] for r in got] == [r['step'] for r in expected] == [1, 2, 3, 4]
    for a, b in zip(got, expected):
      for name in ('loss', 'denoise', 'grad_norm'):
        np.testing.assert_allclose(a[name], b[name], rtol=2e-4, err_msg=name)
    _, member_state = train.load_trained(tiny_config, ensemble_dir, member=member)
    _, single_state = train.load_trained(single, single_dir)
    for a, b in zip(_leaves(member_state.params), _leaves(single_state.params)):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_a_diverging_member_stops_alone(tiny_config):
  tiny_config.train.ensemble_size = 2
  built = train.build(tiny_config)
  seeds = train.member_seeds(tiny_config)
  state = train.init_states(built, seeds)
  # Poison member 1: its loss is NaN from the first step on.
  poisoned = jax.tree_util.tree_map(lambda a: a.at[1].set(jnp.nan), state.params)
  state = state.replace(params=poisoned)
  before = _leaves(jax.tree_util.tree_map(lambda a: a[1], state.params))
  step_fn = train.train_step_fn(built, seeds)
  state, metrics, alive = step_fn(state)
  assert np.asarray(alive).tolist() == [True, False]
  assert np.asarray(state.step).tolist() == [1, 0]
  assert np.isfinite(np.asarray(metrics['loss'])[0])
  after = _leaves(jax.tree_util.tree_map(lambda a: a[1], state.params))
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)
  # The frozen member stays frozen even once its step is behind.
  state, _, alive = step_fn(state)
  assert np.asarray(state.step).tolist() == [2, 0]
  assert np.asarray(alive).tolist() == [True, False]


def test_init_from_copies_the_source_and_records_it(tiny_config, trained_run, tmp_path):
  source_dir = trained_run                 # Read only: the stage trains in its own workdir.
  _, source = train.load_trained(tiny_config, source_dir)

  stage = tiny_config.copy_and_resolve_references()
  stage.seed = 5
  stage.objective.name = 'task_optimal'
  stage.train.init_from = source_dir
  built = train.build(stage)
  fresh = train.init_states(built, train.member_seeds(stage))
  started, record = train.initialise_from(stage, fresh, built.tx)
  for a, b in zip(_leaves(started.params), _leaves(source.params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(started.constants['readout'], source.constants['readout'])
  assert int(started.step) == 0
  assert int(started.opt_state[-1][0].count) == 0          # Adam starts fresh.
  assert record['workdir'] == os.path.abspath(source_dir) and record['step'] == 4

  stage_dir = str(tmp_path / 'stage')
  train.train(stage, stage_dir)
  with open(os.path.join(stage_dir, 'config.json')) as f:
    saved = json.load(f)
  assert saved['train']['init_from'] == source_dir
  assert saved['initialised_from']['workdir'] == os.path.abspath(source_dir)
  assert saved['initialised_from']['objective'] == 'diffusion'


def test_init_from_a_different_network_names_the_fields(tiny_config, trained_run, tmp_path):
  source_dir = trained_run
  stage = tiny_config.copy_and_resolve_references()
  stage.model.num_units = tiny_config.model.num_units + 2
  stage.train.init_from = source_dir
  with pytest.raises(ValueError, match=r'config.model.num_units: 8 \(source\) vs 10'):
    train.train(stage, str(tmp_path / 'stage'))
  assert not os.path.exists(os.path.join(str(tmp_path / 'stage'), 'metrics.jsonl'))


def test_init_from_must_exist(tiny_config, tmp_path):
  from rnn_behaviour import config_validation
  tiny_config.train.init_from = str(tmp_path / 'nowhere')
  with pytest.raises(config_validation.ConfigError, match='config.train.init_from'):
    config_validation.validate(tiny_config)


def test_an_ensemble_is_evaluated_member_by_member(tiny_config, trained_ensemble, tmp_path):
  tiny_config.train.ensemble_size = 2
  tiny_config.eval.bns_svi_steps = 0
  workdir = shutil.copytree(trained_ensemble, str(tmp_path / 'ensemble'))
  summaries = evaluate.evaluate(tiny_config, workdir)
  assert [s['member'] for s in summaries] == [{'index': 0, 'seed': 0}, {'index': 1, 'seed': 1}]
  for i, summary in enumerate(summaries):
    out = tmp_path / 'ensemble' / 'eval' / f'member_{i}'
    assert json.loads((out / 'summary.json').read_text())['member']['index'] == i
    assert (out / 'summary.csv').exists() and (out / 'response_histograms.png').exists()
    assert summary['trained_steps'] == 4
  # Same held-out displays and generating model, different networks.
  assert summaries[0]['swap_rate']['truth'] == summaries[1]['swap_rate']['truth']
  assert summaries[0]['swap_rate']['network'] != summaries[1]['swap_rate']['network'] or (
      summaries[0]['circular_sd_around_target']['network']
      != summaries[1]['circular_sd_around_target']['network'])
