"""The paper's plane-alignment protocol, prediction and swap decision on constructed activity
with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour.analysis import decoding
from rnn_behaviour.analysis import paper_protocol as pp
from rnn_behaviour.analysis import planes

UNITS = 10
READOUT = np.eye(UNITS)[-2:]          # Units 8 and 9 are the readout plane.


def _constructed(key, num_trials, plane_of_item, readout_code_item1=0.0, noise=0.05):
  """(1, M, n) states of one time step: the cued item's reported colour r coded on a plane.

  plane_of_item[i] = (u, v): unit indices carrying cos r and sin r when item i is cued.
  """
  k_colour, k_cued, k_noise = jax.random.split(key, 3)
  reported = jax.random.uniform(k_colour, (num_trials,), minval=-np.pi, maxval=np.pi)
  cued = jax.random.bernoulli(k_cued, 0.5, (num_trials,)).astype(jnp.int32)
  x = noise * jax.random.normal(k_noise, (num_trials, UNITS))
  for item, (u, v) in enumerate(plane_of_item):
    mine = (cued == item)[:, None]
    x = x + mine * (jnp.cos(reported)[:, None] * jnp.eye(UNITS)[u]
                    + jnp.sin(reported)[:, None] * jnp.eye(UNITS)[v])
  # A strong colour code of item 1 in the readout plane: the protocol must not see it.
  x = x + readout_code_item1 * (cued == 1)[:, None] * (
      jnp.cos(reported)[:, None] * READOUT[0] + jnp.sin(reported)[:, None] * READOUT[1])
  return x[None], cued, reported


ORTHOGONAL = ((0, 1), (0, 2))     # Normals e2 and e1 in the 3-D span: cos 0.
ALIGNED = ((0, 1), (0, 1))


@pytest.mark.parametrize('planes_of_items,expected', [(ORTHOGONAL, 0.0), (ALIGNED, 1.0)])
def test_known_planes(planes_of_items, expected):
  states, cued, reported = _constructed(jax.random.key(0), 4000, planes_of_items,
                                        readout_code_item1=5.0)
  correct = jnp.ones_like(reported, bool)
  cos = pp.pair_alignment(states, jnp.asarray(READOUT), cued, reported, correct)
  assert cos.shape == (1,)
  assert abs(float(cos[0]) - expected) < 0.05


def test_readout_plane_would_mislead_without_the_null_projection():
  states, cued, reported = _constructed(jax.random.key(1), 4000, ALIGNED, readout_code_item1=5.0)
  correct = jnp.ones_like(reported, bool)
  with_projection = pp.pair_alignment(states, jnp.asarray(READOUT), cued, reported, correct)
  # A "readout" on two silent units instead: nothing is removed, item 1's readout code wins.
  silent = jnp.asarray(np.eye(UNITS)[3:5])
  without = pp.pair_alignment(states, silent, cued, reported, correct)
  assert float(with_projection[0]) > 0.95
  assert float(without[0]) < 0.5


def test_only_correct_trials_enter_the_planes():
  states, cued, reported = _constructed(jax.random.key(2), 4000, ALIGNED)
  # Swap trials (marked incorrect) whose reported colour is unrelated to the state.
  shuffled = jax.random.permutation(jax.random.key(3), reported)
  correct = jnp.arange(4000) % 4 != 0
  reported_mixed = jnp.where(correct, reported, shuffled)
  cos = pp.pair_alignment(states, jnp.asarray(READOUT), cued, reported_mixed, correct)
  assert float(cos[0]) > 0.95


def test_transition_time_is_recovered_by_the_sigmoid_fit():
  steps, onset = 20, 9
  key = jax.random.key(4)
  frames = []
  for t in range(steps):
    states, cued, reported = _constructed(jax.random.fold_in(key, t), 2000,
                                          ORTHOGONAL if t < onset else ALIGNED)
    # The same trials at every step: reuse the colours and cues of step 0.
    if t == 0:
      cued0, reported0 = cued, reported
    frames.append(_constructed(jax.random.fold_in(key, 0), 2000,
                               ORTHOGONAL if t < onset else ALIGNED)[0])
  trajectory = jnp.concatenate(frames)                       # (T, M, n)
  cos = np.asarray(pp.pair_alignment(trajectory, jnp.asarray(READOUT), cued0, reported0,
                                     jnp.ones(2000, bool)))
  assert np.all(cos[:onset] < 0.1) and np.all(cos[onset:] > 0.9)
  fit = planes.fit_sigmoid_vs_flat(np.arange(steps), cos)
  assert fit['sigmoid_preferred']
  assert onset - 1 <= fit['sigmoid_params']['midpoint'] <= onset
  assert fit['sigmoid_mse'] < 0.01 * fit['flat_mse']


def test_average_over_pairs_and_its_band():
  per_pair = np.array([[0.1, 0.9], [0.3, 0.7], [np.nan, 0.8]])
  result = pp.average_over_pairs(per_pair, num_bootstrap=500)
  np.testing.assert_allclose(result.mean, [0.2, 0.8])
  assert result.num_pairs.tolist() == [2, 3]
  assert np.all(result.band[0] <= result.mean + 1e-9) and np.all(result.band[1] >= result.mean - 1e-9)
  assert result.band[0, 0] >= 0.1 - 1e-9 and result.band[1, 0] <= 0.3 + 1e-9


def test_prediction_slope_and_rank_correlation():
  rng = np.random.default_rng(0)
  distance = np.repeat(np.linspace(np.pi / 4, 11 * np.pi / 12, 9), 4)
  alignment = 0.9 - 0.2 * distance + 0.02 * rng.normal(size=distance.size)
  result = pp.precue_prediction(alignment, distance)
  assert abs(result['slope'] + 0.2) < 0.03
  assert result['slope_interval'][1] < 0 and result['spearman_interval'][1] < 0
  assert result['spearman'] < -0.8
  unrelated = pp.precue_prediction(rng.uniform(size=distance.size), distance)
  assert unrelated['slope_interval'][0] < 0 < unrelated['slope_interval'][1]


def test_swap_decision_time_and_direction():
  steps, onset, k, s, d = 12, 6, 64, 16, 6
  key_x, key_swap, key_auc = jax.random.split(jax.random.key(5), 3)
  swap = jax.random.bernoulli(key_swap, 0.3, (k, s))
  direction = jnp.ones(d) / jnp.sqrt(d)
  drift = jnp.where(jnp.arange(steps) >= onset, 3.0, 0.0)[:, None, None, None]
  states = jax.random.normal(key_x, (steps, k, s, d)) + drift * swap[None, :, :, None] * direction
  result = decoding.swap_auc_over_time(key_auc, states, swap, num_shuffles=8)
  auc = np.asarray(result.auc)
  assert np.all(np.abs(auc[:onset] - 0.5) < 0.15) and np.all(auc[onset:] > 0.8)
  assert pp.decided_from(auc, np.asarray(result.band[1])) == onset
  found = pp.discriminating_direction(states[-1], swap)
  assert float(jnp.abs(found @ direction)) > 0.9
  projected = np.asarray(pp.projections(states, found))
  assert projected.shape == (steps, k, s)
  sw = np.asarray(swap)
  assert projected[-1][sw].mean() - projected[-1][~sw].mean() > 1.0


def test_displays_and_distances():
  np.testing.assert_allclose(pp.pair_distances(np.pi / 4, np.pi / 12, cue_grid=8),
                             np.arange(1, 5) * np.pi / 4)
  np.testing.assert_allclose(np.degrees(pp.pair_distances(np.pi / 4, np.pi / 12)),
                             np.arange(45, 166, 15))
  cues, dist = pp.cue_pairs([np.pi / 4, np.pi], 4)
  assert cues.shape == (8, 2) and dist.tolist() == [np.pi / 4] * 4 + [np.pi] * 4
  displays = pp.pair_displays(cues[0], 12, np.pi / 4)
  assert displays.num_displays == 2 * 12 * 9
  separation = np.abs(np.angle(np.exp(1j * np.diff(np.asarray(displays.report), axis=1))))
  assert separation.min() >= np.pi / 4 - 1e-6
  assert np.asarray(displays.cued[:108]).max() == 0 and np.asarray(displays.cued[108:]).min() == 1
