"""Training end to end: train + evaluate, resume, NaN handling, config errors."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from rnn_behaviour import config_validation
from rnn_behaviour import modes
from rnn_behaviour import train


def _params(state):
  return [np.asarray(p) for p in jax.tree_util.tree_leaves(state.params)]


def test_train_and_evaluate_end_to_end(tiny_config, trained_run):
  workdir = trained_run                  # conftest: modes.run(tiny config, workdir, 'all').
  metrics = train.read_metrics(workdir)
  assert [m['step'] for m in metrics] == [1, 2, 3, 4]
  assert all(np.isfinite(m['loss']) for m in metrics)
  samples = np.load(os.path.join(workdir, 'eval', 'samples.npz'))
  k, s, n = 8, 16, 2
  expected = {'cue': (k, n), 'report': (k, n), 'cued': (k,), 'network': (k, s),
              'surrogate': (k, s), 'weights': (k, n + 1)}
  assert {name: samples[name].shape for name in expected} == expected
  np.testing.assert_allclose(samples['weights'].sum(1), 1.0, rtol=1e-5)
  assert np.all(np.abs(samples['network']) <= np.pi)
  with open(os.path.join(workdir, 'eval', 'summary.json')) as f:
    summary = json.load(f)
  assert summary['trained_steps'] == 4
  assert len(summary['swap_rate_by_cue_distance']['network']) == tiny_config.eval.num_cue_bins
  fitted = summary['bns_swap_function']
  assert set(fitted) >= {'network', 'surrogate', 'exact', 'logit_error'}
  assert min(fitted['network']['distance']) >= tiny_config.task.min_separation_cue - 1e-6
  assert np.isfinite(fitted['logit_error'])
  for png in ('response_histograms.png', 'swap_rate_by_cue_distance.png', 'training_loss.png',
              'swap_function.png'):
    assert os.path.getsize(os.path.join(workdir, 'eval', png)) > 1000


def test_resume_continues_exactly(tiny_config, trained_run, tmp_path):
  _, full = train.load_trained(tiny_config, trained_run)          # 4 steps, checkpoints 2, 4.
  # An interrupted run: it got as far as the checkpoint at step 2 and died before step 4.
  interrupted = str(tmp_path / 'interrupted')
  shutil.copytree(trained_run, interrupted)
  shutil.rmtree(os.path.join(interrupted, train.CHECKPOINT_DIR, '4'))
  resumed = train.train(tiny_config, interrupted)
  assert int(resumed.step) == 4
  for a, b in zip(_params(full), _params(resumed)):
    np.testing.assert_array_equal(a, b)
  assert [m['step'] for m in train.read_metrics(interrupted)] == [1, 2, 3, 4]
  assert train.read_metrics(interrupted)[-1]['loss'] == train.read_metrics(
      trained_run)[-1]['loss']


def test_nan_stops_training_and_keeps_last_good_checkpoint(tiny_config, tmp_path):
  tiny_config.train.num_steps = 6
  tiny_config.train.checkpoint_every = 1
  tiny_config.train.warmup_steps = 0
  tiny_config.train.grad_clip = 0.0
  tiny_config.train.learning_rate = 1e30
  workdir = str(tmp_path / 'nan')
  with pytest.raises(FloatingPointError, match='last good checkpoint'):
    train.train(tiny_config, workdir)
  kept = sorted(int(s) for s in os.listdir(os.path.join(workdir, train.CHECKPOINT_DIR))
                if s.isdigit())
  assert kept, 'a good checkpoint should remain'
  _, state = train.load_trained(tiny_config, workdir)
  assert all(np.all(np.isfinite(p)) for p in _params(state))


@pytest.mark.parametrize('field,value,message', [
    ('train.displays_per_batch', -4, 'config.train.displays_per_batch must be a positive'),
    ('model.num_units', 0, 'config.model.num_units must be a positive'),
    ('diffusion.beta_max', 1.5, 'config.diffusion.beta_max must be in \\(0, 1\\)'),
    ('diffusion.beta_min', 0.0, 'config.diffusion.beta_min must be in \\(0, 1\\)'),
    ('model.cell', 'lstm', "config.model.cell must be one of \\('rate', 'dendritic'\\)"),
    ('objective.name', 'magic', 'config.objective.name must be one of'),
    ('task.cueing', 'colour', 'config.task.cueing must be one of'),
    ('train.displays_per_chunk', 3, 'config.train.displays_per_chunk=3 must divide'),
    ('analysis.cue_separation', 0.1, 'config.analysis.cue_separation must be in'),
    ('analysis.num_bins', 1, 'config.analysis.num_bins must be an integer >= 2'),
])
def test_invalid_config_fails_before_compiling(tiny_config, tmp_path, field, value, message):
  section, name = field.split('.')
  tiny_config[section][name] = value
  with pytest.raises(config_validation.ConfigError, match=message):
    modes.run(tiny_config, str(tmp_path / 'bad'), 'all')
  assert not os.path.exists(str(tmp_path / 'bad' / train.CHECKPOINT_DIR))


def test_default_and_paper_configs_are_valid():
  from rnn_behaviour.configs import default, paper
  config_validation.validate(default.get_config())
  config_validation.validate(paper.get_config())


def test_chunked_step_averages_per_chunk_gradients(tiny_config):
  from rnn_behaviour import objectives, rnn
  from rnn_behaviour.behaviour import parametric
  network = rnn.make_network(tiny_config)
  tx = train.make_optimizer(tiny_config.train)
  state = train.create_train_state(tiny_config, network, tx, jax.random.key(0))
  loss_fn = objectives.make_loss_fn(tiny_config, network)
  batch = objectives.sample_batch(jax.random.key(1), tiny_config,
                                  parametric.from_config(tiny_config.behaviour))
  key = jax.random.key(2)
  step = jax.jit(train.make_train_step(loss_fn, tx, num_chunks=2))
  new_state, metrics = step(state, batch, key)
  # By hand: each half of the displays with its own key, gradients and metrics averaged.
  keys = jax.random.split(key, 2)
  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  halves = [jax.tree_util.tree_map(lambda a, i=i: a[2 * i:2 * i + 2], batch) for i in range(2)]
  results = [grad_fn(state.params, state.constants, h, k) for h, k in zip(halves, keys)]
  mean_grads = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, results[0][1], results[1][1])
  updates, _ = tx.update(mean_grads, state.opt_state, state.params)
  import optax
  expected = optax.apply_updates(state.params, updates)
  for a, b in zip(jax.tree_util.tree_leaves(new_state.params), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(metrics['loss'], (results[0][0][0] + results[1][0][0]) / 2, rtol=1e-5)


def test_resuming_with_another_network_fails_clearly(tiny_config, tmp_path):
  workdir = str(tmp_path / 'run')
  train.train(tiny_config, workdir)
  tiny_config.model.num_units = 12
  with pytest.raises(ValueError, match='config.model.num_units: 8 -> 12'):
    train.train(tiny_config, workdir)
  # The record of the original run is untouched.
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['num_units'] == 8
