"""Displays, their inputs and the trial's epochs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import circular
from rnn_behaviour import task


def _pairwise_min(angles):
  d = circular.circular_distance(angles[:, :, None], angles[:, None, :])
  n = angles.shape[1]
  return float(jnp.min(d + 10 * jnp.eye(n)))


@pytest.mark.parametrize('num_items,sep', [(2, np.pi / 4), (4, np.pi / 4), (6, 0.9)])
def test_continuous_displays_respect_separation(num_items, sep):
  d = task.sample_displays(jax.random.key(0), 4000, num_items, min_separation_cue=sep,
                           min_separation_report=sep)
  assert d.cue.shape == d.report.shape == (4000, num_items)
  assert d.cued.shape == (4000,)
  for a in (d.cue, d.report):
    assert float(a.min()) >= -np.pi and float(a.max()) < np.pi
    assert _pairwise_min(a) >= sep - 1e-5
  assert set(np.unique(d.cued)) == set(range(num_items))


def test_continuous_displays_are_uniform_and_exchangeable():
  d = task.sample_displays(jax.random.key(1), 20000, 3, min_separation_cue=1.0)
  counts, _ = np.histogram(np.asarray(d.cue[:, 0]), 8, range=(-np.pi, np.pi))
  assert counts.min() > 0.9 * 2500 and counts.max() < 1.1 * 2500
  # No item order: the signed gap from item 0 to item 1 is symmetric about zero.
  gaps = np.asarray(circular.wrap(d.cue[:, 1] - d.cue[:, 0]))
  assert abs(np.mean(gaps > 0) - 0.5) < 0.02


def test_grid_displays_sit_on_grid_with_separation():
  d = task.sample_displays(jax.random.key(2), 3000, 3, cue_grid=8, min_separation_cue=np.pi / 2)
  steps = np.asarray(d.cue) / (np.pi / 4)
  np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
  assert _pairwise_min(d.cue) >= np.pi / 2 - 1e-5
  assert len(np.unique(np.round(steps))) == 8


def test_impossible_separation_fails():
  with pytest.raises(ValueError, match='cannot place'):
    task.sample_displays(jax.random.key(0), 2, 5, cue_grid=8, min_separation_cue=np.pi / 2)


def test_stimulus_code_is_sum_of_outer_products():
  d = task.sample_displays(jax.random.key(3), 5, 2)
  code = task.stimulus_code(d, 16, 5.0)
  c = circular.von_mises_code(d.cue, 16, 5.0)
  r = circular.von_mises_code(d.report, 16, 5.0)
  expected = np.einsum('km,kl->kml', c[:, 0], r[:, 0]) + np.einsum('km,kl->kml', c[:, 1], r[:, 1])
  np.testing.assert_allclose(code, expected.reshape(5, 256), rtol=1e-5)
  assert float(code.max()) <= 2.0 + 1e-6


def test_von_mises_code_peaks_at_preferred_angle():
  prefs = circular.preferred_angles(16)
  code = circular.von_mises_code(prefs, 16, 5.0)
  np.testing.assert_allclose(jnp.diag(code), 1.0, rtol=1e-6)
  assert int(jnp.argmax(circular.von_mises_code(jnp.array(prefs[3] + 0.05), 16, 5.0))) == 3


@pytest.mark.parametrize('cueing,stim_size,cue_size', [('probe', 256, 16), ('index', 32, 2)])
def test_epoch_inputs(cueing, stim_size, cue_size):
  d = task.sample_displays(jax.random.key(4), 7, 2)
  inputs = task.epoch_inputs(d, 16, 5.0, cueing)
  assert inputs.shape == (5, 7, stim_size + cue_size)
  assert task.input_sizes(2, 16, cueing) == (stim_size, cue_size)
  stim, delay, cue, post_cue, response = inputs
  assert float(jnp.abs(stim[:, stim_size:]).max()) == 0 and float(stim[:, :stim_size].max()) > 0
  for silent in (delay, post_cue, response):
    assert float(jnp.abs(silent).max()) == 0
  assert float(jnp.abs(cue[:, :stim_size]).max()) == 0
  if cueing == 'index':
    np.testing.assert_array_equal(jnp.argmax(cue[:, stim_size:], -1), d.cued)
    # Item j's colour code sits in channel block j, so the index picks out its colour.
    np.testing.assert_allclose(stim[:, 16:32], circular.von_mises_code(d.report[:, 1], 16, 5.0))
  else:
    np.testing.assert_allclose(cue[:, stim_size:], circular.von_mises_code(d.cued_cue(), 16, 5.0))


def test_epochs():
  e = task.Epochs(stimulus=5, delay=15, cue=5, post_cue=1, response=40)
  assert e.total == 66 and e.trial_length == 26
  assert e.start('cue') == 20 and e.start('response') == 26
  assert np.bincount(e.epoch_of_step()).tolist() == [5, 15, 5, 1, 40]


def test_cue_distances_and_masks():
  d = task.Displays(cue=jnp.array([[0.0, np.pi / 2, -3.0]]),
                    report=jnp.zeros((1, 3)), cued=jnp.array([1]))
  # -3 - pi/2 = -4.571 rad wraps to 1.712 rad.
  np.testing.assert_allclose(task.cue_distances(d), [[np.pi / 2, 0.0, 2 * np.pi - 3.0 - np.pi / 2]],
                             rtol=1e-5)
  np.testing.assert_array_equal(task.nontarget_mask(d), [[True, False, True]])


def test_conjunctive_cue_is_cue_code_times_ones_in_the_stimulus_slots():
  d = task.sample_displays(jax.random.key(5), 6, 2)
  channel = task.epoch_inputs(d, 16, 5.0, 'probe')
  inputs = task.epoch_inputs(d, 16, 5.0, 'probe', cue_input='conjunctive')
  assert inputs.shape == channel.shape               # Same layout, same input size.
  cue = inputs[task.EPOCH_NAMES.index('cue')]
  code = circular.von_mises_code(d.cued_cue(), 16, 5.0)
  expected = jnp.einsum('km,l->kml', code, jnp.ones(16)).reshape(6, 256)
  np.testing.assert_allclose(cue[:, :256], expected, rtol=1e-6)
  assert float(jnp.abs(cue[:, 256:]).max()) == 0     # No separate cue channel.
  # Every other epoch is as before.
  for e, name in enumerate(task.EPOCH_NAMES):
    if name != 'cue':
      np.testing.assert_array_equal(inputs[e], channel[e])


def test_conjunctive_cue_needs_probe_cueing():
  d = task.sample_displays(jax.random.key(5), 2, 2)
  with pytest.raises(ValueError, match='probe'):
    task.epoch_inputs(d, 16, 5.0, 'index', cue_input='conjunctive')
  with pytest.raises(ValueError, match='cue_input'):
    task.epoch_inputs(d, 16, 5.0, 'probe', cue_input='shared')
