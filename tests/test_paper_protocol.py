"""The paper's plane-alignment protocol, prediction and swap decision on constructed activity
with known answers; the authors' recipe (the default) and ours side by side."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import task as task_lib
from rnn_behaviour.analysis import decoding
from rnn_behaviour.analysis import paper_protocol as pp
from rnn_behaviour.analysis import planes
from rnn_behaviour.analysis import run_paper
from rnn_behaviour.configs import default

UNITS = 14
_EYE = np.eye(UNITS)
# Colour codes on zero-sum directions of units 0-7 (a trial's mean over units does not see
# them), so both variants give the same known answers unless a test says otherwise.
DIRS = np.stack([(_EYE[0] - _EYE[1]), (_EYE[2] - _EYE[3]), (_EYE[4] - _EYE[5]),
                 (_EYE[6] - _EYE[7])]) / np.sqrt(2)
# A zero-sum readout (units 8-11): the all-ones direction lies in its null space.
READOUT = np.stack([_EYE[8] - _EYE[9], _EYE[10] - _EYE[11]]) / np.sqrt(2)
SILENT = _EYE[12:14]                    # A "readout" on two silent units: removes nothing.
W = (DIRS[1] + DIRS[2]) / np.sqrt(2)    # Between DIRS[1] and DIRS[2].


def _kwargs(variant):
  steps = pp.recipe(variant)
  return dict(subtract_unit_mean=steps.subtract_unit_mean,
              keep_empty_bins=steps.keep_empty_bins)


def _constructed(key, num_trials, plane_of_item, readout_code_item1=0.0, noise=0.05,
                 reported=None, cued=None):
  """(1, M, n) states of one time step: the cued item's reported colour r coded on a plane.

  plane_of_item[i] = (u, v): (n,) directions carrying cos r and sin r when item i is cued.
  """
  k_colour, k_cued, k_noise = jax.random.split(key, 3)
  if reported is None:
    reported = jax.random.uniform(k_colour, (num_trials,), minval=-np.pi, maxval=np.pi)
  if cued is None:
    cued = jax.random.bernoulli(k_cued, 0.5, (num_trials,)).astype(jnp.int32)
  x = noise * jax.random.normal(k_noise, (num_trials, UNITS))
  for item, (u, v) in enumerate(plane_of_item):
    mine = (cued == item)[:, None]
    x = x + mine * (jnp.cos(reported)[:, None] * u + jnp.sin(reported)[:, None] * v)
  # A strong colour code of item 1 in the readout plane: the protocol must not see it.
  x = x + readout_code_item1 * (cued == 1)[:, None] * (
      jnp.cos(reported)[:, None] * READOUT[0] + jnp.sin(reported)[:, None] * READOUT[1])
  return x[None], cued, reported


ORTHOGONAL = ((DIRS[0], DIRS[1]), (DIRS[0], DIRS[2]))     # Normals DIRS[2] and DIRS[1]: cos 0.
ALIGNED = ((DIRS[0], DIRS[1]), (DIRS[0], DIRS[1]))
TILTED = ((DIRS[0], DIRS[1]), (DIRS[0], W))                # Normals DIRS[2], DIRS[1] - DIRS[2].


def _reference_authors(x, cued, reported, correct, readout, num_bins=16):
  """The authors' recipe written out with numpy loops, for one step's trials x (M, n)."""
  x, cued = np.asarray(x, float), np.asarray(cued)
  reported, correct = np.asarray(reported), np.asarray(correct)
  projector = np.eye(x.shape[1]) - readout.T @ readout      # Rows of the readout orthonormal.
  y = x @ projector
  y = y - y.mean(axis=1, keepdims=True)
  y = y - y.mean(axis=0)
  z = y @ np.linalg.svd(y, full_matrices=False)[2][:3].T
  edges = np.linspace(-np.pi, np.pi, num_bins + 1)
  normals = []
  for item in (0, 1):
    rows = np.zeros((num_bins, 3))
    for b in range(num_bins):
      inside = correct & (cued == item) & (reported >= edges[b]) & (reported < edges[b + 1])
      if inside.any():
        rows[b] = z[inside].mean(axis=0)
    normals.append(np.linalg.svd(rows - rows.mean(axis=0))[2][2])
  return abs(normals[0] @ normals[1])


@pytest.mark.parametrize('variant', pp.VARIANTS)
@pytest.mark.parametrize('planes_of_items,expected',
                         [(ORTHOGONAL, 0.0), (ALIGNED, 1.0), (TILTED, np.sqrt(0.5))])
def test_known_planes(planes_of_items, expected, variant):
  states, cued, reported = _constructed(jax.random.key(0), 4000, planes_of_items,
                                        readout_code_item1=5.0)
  correct = jnp.ones_like(reported, bool)
  cos = pp.pair_alignment(states, jnp.asarray(READOUT), cued, reported, correct,
                          **_kwargs(variant))
  assert cos.shape == (1,)
  assert abs(float(cos[0]) - expected) < 0.05


def test_authors_recipe_matches_a_plain_numpy_reference():
  states, cued, reported = _constructed(jax.random.key(11), 3000, TILTED, noise=0.3)
  states = states + 0.5 * jax.random.normal(jax.random.key(12), (1, 3000, 1))  # Unit means.
  correct = jax.random.bernoulli(jax.random.key(13), 0.8, (3000,))
  cos = pp.pair_alignment(states, jnp.asarray(READOUT), cued, reported, correct)
  expected = _reference_authors(states[0], cued, reported, correct, READOUT)
  assert abs(float(cos[0]) - expected) < 1e-3


def test_readout_plane_would_mislead_without_the_null_projection():
  states, cued, reported = _constructed(jax.random.key(1), 4000, ALIGNED, readout_code_item1=5.0)
  correct = jnp.ones_like(reported, bool)
  with_projection = pp.pair_alignment(states, jnp.asarray(READOUT), cued, reported, correct)
  # Projecting out two silent units instead removes nothing: item 1's readout code wins.
  without = pp.pair_alignment(states, jnp.asarray(SILENT), cued, reported, correct)
  assert float(with_projection[0]) > 0.95
  assert float(without[0]) < 0.5


def test_each_trials_mean_over_units_is_subtracted_in_the_authors_variant():
  num = 8000
  states, cued, reported = _constructed(jax.random.key(6), num, TILTED)
  # A common drive of all units, different on every trial, of more variance than any colour
  # dimension: after the per-trial mean is subtracted it is gone; otherwise it is the first
  # principal axis, and both colour planes, squeezed into the two remaining axes, share it as
  # their normal.
  common = 0.3 * jax.random.normal(jax.random.key(7), (1, num, 1)) * jnp.ones(UNITS)
  correct = jnp.ones_like(reported, bool)
  authors = pp.pair_alignment(states + common, jnp.asarray(READOUT), cued, reported, correct,
                              **_kwargs('authors'))
  ours = pp.pair_alignment(states + common, jnp.asarray(READOUT), cued, reported, correct,
                           **_kwargs('ours'))
  assert abs(float(authors[0]) - np.sqrt(0.5)) < 0.05
  assert float(ours[0]) > 0.9


def test_pca_is_fitted_on_all_trials_swaps_included():
  num = 4000
  states, cued, reported = _constructed(jax.random.key(8), num, TILTED)
  swap = jnp.arange(num) % 4 == 0
  # Swap trials vary hugely along DIRS[3]: a PCA over all trials takes it as its first axis and
  # keeps only two of the colour dimensions, in which both planes have the normal DIRS[3]
  # (|cos| 1); a PCA over the correct trials keeps the three colour dimensions (|cos| 1/sqrt 2).
  burst = 5.0 * jax.random.normal(jax.random.key(9), (num, 1)) * DIRS[3]
  states = states + jnp.where(swap[:, None], burst, 0.0)[None]
  readout = jnp.asarray(READOUT)
  all_trials = pp.pair_alignment(states, readout, cued, reported, ~swap)
  correct_only = pp.pair_alignment(states[:, ~swap], readout, cued[~swap], reported[~swap],
                                   jnp.ones(int((~swap).sum()), bool))
  assert float(all_trials[0]) > 0.95
  assert abs(float(correct_only[0]) - np.sqrt(0.5)) < 0.05


def test_only_correct_trials_enter_the_planes():
  states, cued, reported = _constructed(jax.random.key(2), 4000, ALIGNED)
  # Swap trials (marked incorrect) whose reported colour is unrelated to the state.
  shuffled = jax.random.permutation(jax.random.key(3), reported)
  correct = jnp.arange(4000) % 4 != 0
  reported_mixed = jnp.where(correct, reported, shuffled)
  for variant in pp.VARIANTS:
    cos = pp.pair_alignment(states, jnp.asarray(READOUT), cued, reported_mixed, correct,
                            **_kwargs(variant))
    assert float(cos[0]) > 0.95, variant


def test_empty_bins_are_kept_as_zero_rows():
  num = 4000
  key_cued, key_colour, key_noise = jax.random.split(jax.random.key(10), 3)
  cued = jax.random.bernoulli(key_cued, 0.5, (num,)).astype(jnp.int32)
  colour = jax.random.uniform(key_colour, (num,), minval=-np.pi, maxval=np.pi)
  # Item 0 is only ever reported in the upper half circle: 8 of its 16 bins are empty.
  reported = jnp.where(cued == 0, jnp.abs(colour), colour)
  # Parallel planes, item 0's above the trials' mean and item 1's below it.
  offset = jnp.where(cued == 0, 1.0, -1.0)[:, None] * DIRS[2]
  states, _, _ = _constructed(key_noise, num, ALIGNED, reported=reported, cued=cued)
  states = states + offset[None]
  correct = jnp.ones(num, bool)
  readout = jnp.asarray(READOUT)
  authors = float(pp.pair_alignment(states, readout, cued, reported, correct)[0])
  ours = float(pp.pair_alignment(states, readout, cued, reported, correct,
                                 **_kwargs('ours'))[0])
  # Left out, the empty bins change nothing; as zero rows at the origin they tilt item 0's plane.
  assert ours > 0.99
  assert authors < 0.9
  assert abs(authors - _reference_authors(states[0], cued, reported, correct, READOUT)) < 1e-3


def test_zero_rows_count_as_one_point_for_a_defined_plane():
  points = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
  two_filled = jnp.array([True, True, False])
  normal = pp.plane_normal_with_zero_rows(points, two_filled)
  np.testing.assert_allclose(np.abs(np.asarray(normal)), [0.0, 0.0, 1.0], atol=1e-6)
  assert np.isnan(np.asarray(pp.plane_normal_with_zero_rows(points, jnp.array(
      [True, False, False])))).all()
  assert np.isnan(np.asarray(pp.plane_normal(points, two_filled))).all()


def test_post_cue_step_is_skipped():
  epochs = task_lib.Epochs(stimulus=2, delay=3, cue=2, post_cue=1, response=4)
  steps, spans = pp.analysed_steps(epochs, skip_post_cue=True)
  assert steps.tolist() == [2, 3, 4, 5, 6, 8, 9, 10, 11]
  assert spans == {'delay': (0, 3), 'cue': (3, 5), 'response': (5, 9)}
  steps_ours, spans_ours = pp.analysed_steps(epochs, skip_post_cue=False)
  assert steps_ours.tolist() == list(range(2, 12)) and spans_ours['post_cue'] == (5, 6)
  assert run_paper.epoch_spans(epochs) == spans
  # Constructed activity: orthogonal planes at every step but the post-cue one (aligned).
  key = jax.random.key(14)
  frames = [_constructed(key, 2000, ALIGNED if t == epochs.start('post_cue') else ORTHOGONAL)
            for t in range(epochs.total)]
  trajectory = jnp.concatenate([f[0] for f in frames])      # (total, M, n): the same trials.
  _, cued, reported = frames[0]
  correct = jnp.ones(2000, bool)
  authors = np.asarray(pp.pair_alignment(trajectory[steps], jnp.asarray(READOUT), cued,
                                         reported, correct))
  ours = np.asarray(pp.pair_alignment(trajectory[steps_ours], jnp.asarray(READOUT), cued,
                                      reported, correct, **_kwargs('ours')))
  assert authors.shape == (9,) and np.all(authors < 0.1)
  assert ours.shape == (10,) and ours[5] > 0.9 and np.all(np.delete(ours, 5) < 0.1)


def test_transition_time_is_recovered_by_the_sigmoid_fit():
  steps, onset = 20, 9
  key = jax.random.key(4)
  frames = []
  for t in range(steps):
    # The same trials at every step: the colours and cues of key 0.
    states, cued, reported = _constructed(jax.random.fold_in(key, 0), 2000,
                                          ORTHOGONAL if t < onset else ALIGNED)
    frames.append(states)
  trajectory = jnp.concatenate(frames)                       # (T, M, n)
  cos = np.asarray(pp.pair_alignment(trajectory, jnp.asarray(READOUT), cued, reported,
                                     jnp.ones(2000, bool)))
  assert np.all(cos[:onset] < 0.1) and np.all(cos[onset:] > 0.9)
  fit = planes.fit_sigmoid_vs_flat(np.arange(steps), cos)
  assert fit['sigmoid_preferred']
  assert onset - 1 <= fit['sigmoid_params']['midpoint'] <= onset
  assert fit['sigmoid_mse'] < 0.01 * fit['flat_mse']


def test_authors_pairs_on_the_24_point_grid():
  cues, distances, indices = pp.grid_cue_pairs(24, np.pi / 4)
  assert cues.shape == (216, 2)
  separation = (indices[:, 1] - indices[:, 0]) % 24
  assert sorted(set(separation.tolist())) == list(range(3, 12))
  for s in range(3, 12):
    assert sorted(indices[separation == s, 0].tolist()) == list(range(24))
  np.testing.assert_allclose(distances, separation * np.pi / 12)
  apart = np.abs(np.angle(np.exp(1j * (cues[:, 1] - cues[:, 0]))))
  np.testing.assert_allclose(apart, distances, atol=1e-6)
  # Four rotations: evenly spaced grid points.
  _, _, four = pp.grid_cue_pairs(24, np.pi / 4, num_rotations=4)
  assert sorted(set(four[:, 0].tolist())) == [0, 6, 12, 18]
  # Report values on the same grid, each item cued: 24 x 19 ordered pairs, twice.
  assert pp.pair_displays(cues[0], 24, np.pi / 4).num_displays == 912


def test_settings_of_each_variant():
  config = default.get_config()
  config.task.cue_grid = 0                       # Continuous cues: the 24-point pair grid.
  authors = pp.settings_from_config(config.analysis, config.task)
  assert authors.variant == 'authors' and authors.recipe == pp.RECIPES['authors']
  assert authors.cues.shape == (216, 2) and authors.distances.max() < np.pi
  assert authors.report_values == 24 and authors.samples_per_display == 32
  config.task.cue_grid = 8                       # The network's own cue grid.
  on_grid = pp.settings_from_config(config.analysis, config.task)
  np.testing.assert_allclose(np.unique(on_grid.distances), np.pi / 4 * np.arange(1, 4))
  assert on_grid.cues.shape == (24, 2)
  config.task.cueing = 'index'
  index = pp.settings_from_config(config.analysis, config.task)
  assert index.cues.shape == (1, 2) and index.distances.tolist() == [np.pi]
  assert index.samples_per_display == 64
  config.analysis.paper_variant = 'ours'
  assert pp.settings_from_config(config.analysis, config.task).samples_per_display == 32
  config.task.cueing = 'probe'
  ours = pp.settings_from_config(config.analysis, config.task)
  assert ours.recipe == pp.RECIPES['ours'] and ours.report_values == 12
  assert ours.cues.shape == (16, 2)              # 4 distances on the 8-grid, 4 rotations.


# The authors' variant end to end on a tiny network (its pairs, time axis and summary) is
# tests/test_end_to_end_fast.py's mechanisms-notebook test, on the session's trained tiny run.


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
