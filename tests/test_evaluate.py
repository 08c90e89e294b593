"""Judging statistics: the energy distance, its noise floor, the kernel density."""

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import evaluate


def _von_mises(key, shape, mean, kappa):
  return circular.sample_von_mises(key, jnp.full(shape, mean), kappa)


def test_energy_distance_is_zero_for_identical_sets():
  x = jax.random.uniform(jax.random.key(0), (5, 40), minval=-np.pi, maxval=np.pi)
  np.testing.assert_allclose(evaluate.circular_energy_distance(x, x), 0.0, atol=1e-6)


def test_energy_distance_noise_floor_is_calibrated():
  # Two independent draws of S from one distribution: the V-statistic's expectation is
  # E|X - X'| / S (only the zero diagonal of the within-set means differs).
  k, s = 400, 32
  key_x, key_y, key_ref = jax.random.split(jax.random.key(1), 3)
  x = _von_mises(key_x, (k, s), 0.5, 4.0)
  y = _von_mises(key_y, (k, s), 0.5, 4.0)
  reference = _von_mises(key_ref, (200_000,), 0.5, 4.0)
  mean_pair_distance = jnp.mean(circular.circular_distance(reference[::2], reference[1::2]))
  floor = jnp.mean(evaluate.circular_energy_distance(x, y))
  np.testing.assert_allclose(floor, mean_pair_distance / s, rtol=0.1)
  # A different distribution stands far above that floor.
  shifted = _von_mises(key_y, (k, s), 0.5 + np.pi / 2, 4.0)
  assert jnp.mean(evaluate.circular_energy_distance(x, shifted)) > 20 * floor
  assert jnp.all(evaluate.circular_energy_distance(x, y) >= -1e-6)


def test_kernel_density_integrates_to_one():
  samples = jnp.array([[0.1, 2.0, -3.0, 3.1, 0.0]])
  grid = jnp.linspace(-np.pi, np.pi, 4001)[:-1]
  for kappa in (2.0, 20.0, 200.0):
    density = jnp.exp(evaluate.kde_log_density(jnp.repeat(samples, grid.size, 0), grid, kappa))
    np.testing.assert_allclose(jnp.sum(density) * (2 * np.pi / grid.size), 1.0, rtol=1e-4)


def test_kde_log_likelihood_prefers_the_generating_distribution():
  key_s, key_o = jax.random.split(jax.random.key(2))
  samples = _von_mises(key_s, (300, 256), 1.0, 8.0)
  observed = _von_mises(key_o, (300,), 1.0, 8.0)
  wrong = circular.wrap(samples + 1.0)
  assert (evaluate.kde_log_likelihood(samples, observed, 20.0)
          > evaluate.kde_log_likelihood(wrong, observed, 20.0) + 1.0)


def _judged_summary():
  """`evaluate.summarise` on a parametric model's samples standing in for a network's."""
  from rnn_behaviour import task as task_lib  # pylint: disable=g-import-not-at-top
  from rnn_behaviour.behaviour import parametric  # pylint: disable=g-import-not-at-top
  keys = jax.random.split(jax.random.key(3), 4)
  displays = task_lib.sample_displays(keys[0], 64, num_items=2, cue_grid=8, report_grid=0,
                                      min_separation_cue=np.pi / 4,
                                      min_separation_report=np.pi / 4)
  model = parametric.ParametricSwapModel(kind='gaussian', width=1.5, bias=-1.0,
                                         guess_logit=-3.0, kappa=8.0)
  samples = [model.sample_responses(k, displays, 32) for k in keys[1:]]
  edges = evaluate.cue_bin_edges(4, np.pi / 4)
  summary = evaluate.summarise(displays, *samples, model.mixture_weights(displays), edges)
  summary['heldout_loglik'] = {'observations': 'surrogate draws', 'network': -0.9}
  return summary


def test_tables_are_flat_csv(tmp_path):
  import csv  # pylint: disable=g-import-not-at-top
  summary = _judged_summary()
  paths = evaluate.write_tables(summary, str(tmp_path))
  assert [p.rsplit('/', 1)[-1] for p in paths] == [evaluate.SWAP_RATE_CSV, evaluate.SUMMARY_CSV]
  with open(paths[0], newline='') as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == evaluate.SWAP_RATE_COLUMNS
  assert len(rows) == 4
  assert sum(int(r['pairs']) for r in rows) == 64          # One non-target per display.
  assert [float(r['bin_centre_rad']) for r in rows] == summary['cue_distance_bins']['centres']
  for column in ('network', 'truth', 'model_weight'):
    np.testing.assert_array_equal([float(r[column]) for r in rows],
                                  summary['swap_rate_by_cue_distance'][column])
  assert float(rows[0]['bin_lower_rad']) == np.pi / 4 and float(rows[-1]['bin_upper_rad']) == np.pi
  with open(paths[1], newline='') as f:
    (row,) = list(csv.DictReader(f))
  assert float(row['swap_rate.network']) == summary['swap_rate']['network']
  assert float(row['energy_distance.ratio_to_floor']) == \
      summary['energy_distance']['ratio_to_floor']
  assert row['heldout_loglik.observations'] == 'surrogate draws'
  assert int(row['num_displays']) == 64
  assert not any(name.startswith('cue_distance_bins') for name in row)   # Lists stay out.


def test_empty_bin_is_nan_in_csv(tmp_path):
  import csv  # pylint: disable=g-import-not-at-top
  summary = _judged_summary()
  summary['swap_rate_by_cue_distance']['network'][1] = float('nan')
  path = evaluate.write_tables(summary, str(tmp_path))[0]
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  assert rows[1]['network'] == 'NaN' and np.isnan(float(rows[1]['network']))
