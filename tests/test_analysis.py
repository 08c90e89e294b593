"""Tests of the network analyses (issue 5) on synthetic activity with known answers."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

from rnn_behaviour import files
from rnn_behaviour import task
from rnn_behaviour.analysis import decoding
from rnn_behaviour.analysis import displays_grid
from rnn_behaviour.analysis import dynamics
from rnn_behaviour.analysis import planes
from rnn_behaviour.analysis import plots
from rnn_behaviour.analysis import report

NUM_BINS = 8

# ------------------------------------------------------------------------- display grid


def test_design_grid_covers_every_pair_of_distinct_bins_with_each_item_cued():
  displays = displays_grid.design_grid(NUM_BINS, cue_features=(0.5, -2.0))
  k = 2 * NUM_BINS * (NUM_BINS - 1)
  assert displays.cue.shape == (k, 2) and displays.report.shape == (k, 2)
  bins = np.asarray(displays_grid.item_bins(displays, NUM_BINS))
  assert np.all(bins[:, 0] != bins[:, 1])
  for item in range(2):
    half = bins[np.asarray(displays.cued) == item]
    assert len({tuple(b) for b in half}) == NUM_BINS * (NUM_BINS - 1)
  np.testing.assert_allclose(displays.report, displays_grid.bin_centres(NUM_BINS)[bins],
                             atol=1e-6)
  np.testing.assert_allclose(displays.cue[:, 0], 0.5)
  full = displays_grid.design_grid(4, allow_same_bin=True)
  assert full.num_displays == 2 * 16


def test_angle_bins_edges_and_wrapping():
  edges = displays_grid.bin_edges(4)
  got = displays_grid.angle_bins(jnp.asarray([edges[0], edges[1], edges[1] - 1e-3,
                                              np.pi - 1e-6, np.pi, 3 * np.pi / 4 + 2 * np.pi]),
                                 4)
  np.testing.assert_array_equal(got, [0, 1, 0, 3, 0, 3])


# --------------------------------------------------------------------------- planes


def _planar_states(displays, basis_a, basis_b, noise=0.05, num_steps=2, num_samples=3, seed=0):
  """Each item's report feature on its own plane: x = B_a^T (cos, sin)(r_1) + B_b^T (...)(r_2)."""
  def code(angle):
    return jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
  mean = code(displays.report[:, 0]) @ basis_a + code(displays.report[:, 1]) @ basis_b
  shape = (num_steps, displays.num_displays, num_samples, basis_a.shape[1])
  # numpy noise: synthetic data need not cost a JAX compilation per shape.
  jitter = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
  return jnp.broadcast_to(mean[None, :, None, :], shape) + noise * jitter


@pytest.mark.parametrize('method', planes.METHODS)
def test_plane_alignment_orthogonal_identical_and_known_angle(method):
  displays = displays_grid.design_grid(NUM_BINS)
  bins = displays_grid.item_bins(displays, NUM_BINS)
  eye = np.eye(6, dtype=np.float32)
  cases = {
      'orthogonal 4-d': (eye[[0, 1]], eye[[2, 3]], 0.0),
      'orthogonal normals': (eye[[0, 1]], eye[[0, 2]], 0.0),
      'identical': (eye[[0, 1]], eye[[0, 1]], 1.0),
      'tilted 60 deg': (eye[[0, 1]], np.stack([eye[0], 0.5 * eye[1] + 0.866025 * eye[2]]), 0.5),
  }
  for name, (basis_a, basis_b, expected) in cases.items():
    states = _planar_states(displays, jnp.asarray(basis_a), jnp.asarray(basis_b))
    cosine = planes.alignment_time_course(states, bins, NUM_BINS, method=method)
    assert cosine.shape == (2,)
    np.testing.assert_allclose(cosine, expected, atol=0.05, err_msg=name)
    masked = planes.alignment_time_course(states, bins, NUM_BINS,
                                          masks=displays_grid.cued_masks(displays),
                                          method=method)
    np.testing.assert_allclose(masked, expected, atol=0.06, err_msg=name)


def test_additive_bin_means_remove_the_distinct_bin_leak():
  """Raw averages over the other item leak its code when items never share a bin."""
  eye = np.eye(6, dtype=np.float32)
  distinct = displays_grid.design_grid(NUM_BINS)
  states = _planar_states(distinct, jnp.asarray(eye[[0, 1]]), jnp.asarray(eye[[2, 3]]), 0.0)
  bins = displays_grid.item_bins(distinct, NUM_BINS)
  leaky = planes.alignment_time_course(states, bins, NUM_BINS, estimator='average')
  clean = planes.alignment_time_course(states, bins, NUM_BINS, estimator='additive')
  assert np.all(leaky > 0.2) and np.all(clean < 1e-2)
  # On a full factorial design the two estimators agree.
  full = displays_grid.design_grid(NUM_BINS, allow_same_bin=True)
  states = _planar_states(full, jnp.asarray(eye[[0, 1]]), jnp.asarray(eye[[2, 3]]), 0.0)
  bins = displays_grid.item_bins(full, NUM_BINS)
  np.testing.assert_allclose(
      planes.item_bin_means(states, bins, NUM_BINS, estimator='average'),
      planes.item_bin_means(states, bins, NUM_BINS, estimator='additive'), atol=1e-4)


def test_bin_means_and_fit_plane():
  centres = displays_grid.bin_centres(4)
  states = jnp.asarray(np.stack([np.cos(centres), np.sin(centres), np.zeros(4)], -1))
  means = planes.bin_means(states[None], jnp.arange(4), 4)          # (T=1, B, n), S axis added
  np.testing.assert_allclose(means[0], states, atol=1e-6)
  plane = planes.fit_plane(means[0])
  np.testing.assert_allclose(plane.explained, 1.0, atol=1e-6)
  np.testing.assert_allclose(jnp.abs(plane.basis[2]), 0.0, atol=1e-6)
  empty = planes.bin_means(states[None], jnp.zeros(4, jnp.int32), 4)
  assert np.all(np.isnan(empty[0, 1:]))


def test_bootstrap_band_brackets_estimate_and_is_keyed():
  displays = displays_grid.design_grid(6)
  bins = displays_grid.item_bins(displays, 6)
  eye = np.eye(5, dtype=np.float32)
  states = _planar_states(displays, jnp.asarray(eye[[0, 1]]),
                          jnp.asarray(np.stack([eye[0], 0.6 * eye[1] + 0.8 * eye[2]])),
                          noise=0.3, num_samples=6)
  masks = displays_grid.cued_masks(displays)
  first = planes.bootstrap_alignment(jax.random.key(0), states, bins, 6, masks=masks,
                                     num_bootstrap=30)
  again = planes.bootstrap_alignment(jax.random.key(0), states, bins, 6, masks=masks,
                                     num_bootstrap=30)
  np.testing.assert_array_equal(first.samples, again.samples)
  assert first.band.shape == (2, 2) and first.samples.shape == (30, 2)
  assert np.all(first.band[0] <= first.band[1])
  assert np.all(first.band[0] - 0.05 <= first.cosine)
  assert np.all(first.cosine <= first.band[1] + 0.05)
  assert np.all(first.band[1] - first.band[0] > 0)


def test_sigmoid_fit_preferred_on_step_not_on_flat():
  rng = np.random.default_rng(0)
  times = np.arange(-12, 8)
  step = np.where(times >= 2, 0.9, 0.1) + 0.03 * rng.normal(size=times.size)
  fit = planes.fit_sigmoid_vs_flat(times, step)
  assert fit['sigmoid_preferred']
  assert fit['sigmoid_mse'] < 0.1 * fit['flat_mse']
  assert 1.0 <= fit['sigmoid_params']['midpoint'] <= 2.0
  assert abs(fit['sigmoid_params']['low'] - 0.1) < 0.05
  assert abs(fit['sigmoid_params']['high'] - 0.9) < 0.05
  flat = 0.3 + 0.03 * rng.normal(size=times.size)
  fit = planes.fit_sigmoid_vs_flat(times, flat)
  assert not fit['sigmoid_preferred']
  assert fit['sigmoid_mse'] <= fit['flat_mse']
  np.testing.assert_allclose(fit['flat_mse'], np.var(flat), rtol=1e-9)
  around = planes.fit_around_cue(np.concatenate([np.zeros(5), step]), cue_onset=17, before=12,
                                 after=8)
  assert (around['start'], around['stop']) == (5, 25) and around['sigmoid_preferred']


# --------------------------------------------------------------------------------- AUC


def test_auc_known_values_and_ties():
  labels = jnp.asarray([0, 0, 1, 1], bool)
  assert float(decoding.auc(jnp.asarray([0.1, 0.4, 0.35, 0.8]), labels)) == pytest.approx(0.75)
  assert float(decoding.auc(jnp.asarray([0.0, 1.0, 2.0, 3.0]), labels)) == pytest.approx(1.0)
  assert float(decoding.auc(jnp.asarray([3.0, 2.0, 1.0, 0.0]), labels)) == pytest.approx(0.0)
  assert float(decoding.auc(jnp.ones(4), labels)) == pytest.approx(0.5)
  # Pairs (pos, neg): (1, 0) win, (1, 1) tie, (2, 0) win, (2, 1) win -> 3.5 / 4.
  assert float(decoding.auc(jnp.asarray([0.0, 1.0, 1.0, 2.0]),
                            jnp.asarray([0, 1, 0, 1], bool))) == pytest.approx(0.875)


def test_auc_matches_pairwise_count_and_masking():
  rng = np.random.default_rng(1)
  scores = rng.integers(0, 5, 60).astype(np.float32)          # Many ties.
  labels = rng.random(60) < 0.4
  pos, neg = scores[labels], scores[~labels]
  brute = np.mean((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None]))
  assert float(decoding.auc(scores, labels)) == pytest.approx(brute, abs=1e-6)
  mask = rng.random(60) < 0.5
  assert float(decoding.masked_auc(scores, labels, mask)) == pytest.approx(
      float(decoding.auc(scores[mask], labels[mask])), abs=1e-6)


def test_logistic_fit_reaches_the_optimum():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(200, 5)) * [1, 2, 3, 4, 5] + 3.0, jnp.float32)
  labels = jnp.asarray(rng.random(200) < jax.nn.sigmoid(x[:, 0] - x[:, 1] / 2 - 1.5))
  l2 = 0.1
  standardiser, coefficients = decoding.fit_logistic(x, labels, l2=l2)
  z = standardiser(x)

  def loss(b):
    logits = z @ b
    return (jnp.mean(jax.nn.softplus(logits) - labels * logits)
            + 0.5 * l2 * jnp.sum(b[:-1]**2))
  np.testing.assert_allclose(jax.grad(loss)(coefficients), 0.0, atol=1e-5)
  weights, bias = standardiser.fold_into(coefficients)
  np.testing.assert_allclose(x @ weights + bias, z @ coefficients, rtol=1e-4, atol=1e-4)


def _swap_dataset(seed=0, num_steps=4, num_displays=30, num_samples=10, units=6):
  """States with the swap written into unit 0 at the last step only; noise elsewhere."""
  rng = np.random.default_rng(seed)
  labels = rng.random((num_displays, num_samples)) < 0.3
  states = rng.normal(size=(num_steps, num_displays, num_samples, units)).astype(np.float32)
  states[-1, :, :, 0] += 4.0 * labels
  return jnp.asarray(states), jnp.asarray(labels)


def test_swap_decoder_separable_and_shuffled():
  states, labels = _swap_dataset()
  result = decoding.swap_auc_over_time(jax.random.key(3), states, labels, num_shuffles=8)
  assert result.auc.shape == (4,) and result.chance.shape == (8, 4)
  assert result.band.shape == (2, 4)
  assert float(result.auc[-1]) > 0.95                       # Near perfect where separable.
  assert np.all(np.abs(np.asarray(result.auc[:-1]) - 0.5) < 0.15)   # Chance before.
  # Shuffled labels: chance at every step, including the separable one.
  assert abs(float(jnp.mean(result.chance)) - 0.5) < 0.05
  assert np.all(result.band[0] < 0.5) and np.all(result.band[1] > 0.5)
  assert float(result.auc[-1]) > float(result.band[1, -1])


def test_swap_labels_and_folds():
  report = jnp.asarray([[0.0, 2.0], [1.0, -1.0]])
  responses = jnp.asarray([[0.2, 1.8, 3.0], [-0.8, 0.9, 1.2]])
  displays = task.Displays(cue=jnp.zeros((2, 2)), report=report, cued=jnp.asarray([0, 1]))
  got = decoding.swap_labels(responses, displays)
  np.testing.assert_array_equal(got, [[False, True, True], [False, True, True]])
  folds = decoding.display_folds(jax.random.key(0), 11, 3, 5)
  assert np.all(np.ptp(np.asarray(folds), axis=1) == 0)
  assert set(np.unique(folds)) == set(range(5))
  labels = jnp.arange(50) < 10
  shuffled = decoding.shuffle_within_displays(jax.random.key(2), labels.reshape(5, 10))
  np.testing.assert_array_equal(shuffled.sum(1), labels.reshape(5, 10).sum(1))


def test_cross_temporal_decoding_finds_when_the_angle_is_held():
  num_steps, num_displays, num_samples, units = 5, 24, 4, 8
  angles = jnp.asarray(displays_grid.bin_centres(num_displays))
  code = jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1) @ jnp.eye(2, units)
  states = jnp.broadcast_to(code[None, :, None], (num_steps, num_displays, num_samples, units))
  states = states.at[:2].set(0.0)                           # The angle arrives at step 2.
  states = states + 0.1 * np.random.default_rng(0).normal(size=states.shape).astype(np.float32)
  result = decoding.cross_temporal_decoding(jax.random.key(1), states, angles)
  assert result.error.shape == (num_steps, num_steps)
  assert np.all(result.error[2:, 2:] < 0.3)
  assert np.all(result.similarity[2:, 2:] > 0.9)
  assert np.all(result.error[:2, :2] > 0.8)                # Chance is pi / 2.


# --------------------------------------------------------------------------- dynamics


def test_fixed_point_of_linear_map_found_exactly_with_its_eigenvalues():
  rng = np.random.default_rng(0)
  n = 5
  rotation = np.array([[0.6, -0.5], [0.5, 0.6]])           # Eigenvalues 0.6 +- 0.5i.
  core = np.zeros((n, n))
  core[:2, :2] = rotation
  core[2:, 2:] = np.diag([0.9, -0.3, 1.1])                  # One unstable direction.
  change = rng.normal(size=(n, n))
  a = change @ core @ np.linalg.inv(change)
  b = rng.normal(size=n)
  step_map = lambda x: jnp.asarray(a, jnp.float32) @ x + jnp.asarray(b, jnp.float32)
  velocity = dynamics.velocity_of_map(step_map)
  starts = 3.0 * rng.normal(size=(12, n)).astype(np.float32)
  found = dynamics.find_fixed_points(velocity, starts, num_steps=200)
  expected = np.linalg.solve(np.eye(n) - a, b)
  assert found.points.shape == (1, n)
  np.testing.assert_allclose(found.points[0], expected, rtol=1e-4, atol=1e-4)
  assert found.q[0] < 1e-8
  np.testing.assert_allclose(np.sort_complex(found.eigenvalues[0]),
                             np.sort_complex(np.linalg.eigvals(a)), atol=1e-4)
  flow = dynamics.find_fixed_points(velocity, starts[:2], num_steps=50, jacobian_of='velocity')
  np.testing.assert_allclose(np.sort_complex(flow.eigenvalues[0]),
                             np.sort_complex(np.linalg.eigvals(a - np.eye(n))), atol=1e-4)


def test_slow_point_kept_only_with_looser_tolerance_and_deduplication():
  velocity = lambda x: 0.1 * (x**2 + 0.01)                 # No root; slowest at x = 0.
  starts = jnp.linspace(-1.0, 1.0, 6)[:, None]
  strict = dynamics.find_fixed_points(velocity, starts, tolerance=1e-8, num_steps=500)
  assert strict.points.shape[0] == 0 and strict.eigenvalues.shape == (0, 1)
  loose = dynamics.find_fixed_points(velocity, starts, tolerance=1e-6, dedup_distance=0.05,
                                     num_steps=500)
  assert loose.points.shape == (1, 1)
  np.testing.assert_allclose(loose.points[0], 0.0, atol=0.03)
  np.testing.assert_array_equal(dynamics.deduplicate(np.array([[0.0], [0.01], [1.0]]),
                                                     np.array([2.0, 1.0, 3.0]), 0.1), [1, 2])


def test_pca_variances_and_projection():
  scales = jnp.asarray([3.0, 2.0, 1.0, 0.1])
  states = np.random.default_rng(0).normal(size=(20, 10, 5, 4)).astype(np.float32) * scales + 1.0
  fitted = dynamics.pca(states)
  np.testing.assert_allclose(fitted.explained.sum(), 1.0, atol=1e-5)
  assert np.all(np.diff(np.asarray(fitted.variance)) <= 0)
  np.testing.assert_allclose(fitted.components @ fitted.components.T, np.eye(4), atol=1e-5)
  np.testing.assert_allclose(fitted.explained, scales**2 / jnp.sum(scales**2), atol=0.02)
  projected = dynamics.project(states, dynamics.pca(states, 2))
  assert projected.shape == (20, 10, 5, 2)
  np.testing.assert_allclose(projected.reshape(-1, 2).mean(0), 0.0, atol=1e-4)


# ------------------------------------------------------------------- plots and report


def test_plots_return_figures_and_save(tmp_path):
  starts = {'stimulus': 0, 'delay': 2, 'cue': 6}
  fit = planes.fit_around_cue(np.r_[np.zeros(6), np.ones(4)] + 0.01 * np.arange(10), 6)
  figures = {
      'alignment': plots.plot_alignment(np.linspace(0, 1, 10), np.zeros((2, 10)), fit, 6,
                                        starts),
      'swap': plots.plot_swap_auc(np.full(10, 0.6), np.stack([np.full(10, .4), np.full(10, .6)]),
                                  starts),
      'cross': plots.plot_cross_temporal(np.eye(10), starts),
      'pca': plots.plot_pca(np.asarray([0.5, 0.3, 0.2]), np.zeros((10, 4, 3)),
                            np.linspace(-3, 3, 4), starts),
      'eig': plots.plot_eigenvalues(np.asarray([[0.5 + 0.5j, 0.5 - 0.5j]]), q=[1e-9]),
      'eig_empty': plots.plot_eigenvalues(np.zeros((0, 3), complex)),
  }
  for name, fig in figures.items():
    assert isinstance(fig, Figure)
    path = files.save_figure(fig, str(tmp_path / 'figs' / f'{name}.png'))
    assert (tmp_path / 'figs' / f'{name}.png').stat().st_size > 1000, path


def test_report_on_a_toy_network(tmp_path):
  """analyse + write_report end to end on a tiny random leaky tanh network."""
  epochs = task.Epochs(stimulus=2, delay=4, cue=2, post_cue=1, response=2)
  displays = displays_grid.design_grid(4)
  inputs = task.epoch_inputs(displays, num_tuning=6)
  rng = np.random.default_rng(0)
  units, samples = 10, 4
  weights = jnp.asarray(0.8 * rng.normal(size=(units, units)) / np.sqrt(units), jnp.float32)
  in_weights = jnp.asarray(0.5 * rng.normal(size=(inputs.shape[-1], units)), jnp.float32)

  def step(x, drive):
    return 0.8 * x + 0.2 * jnp.tanh(x @ weights.T + drive @ in_weights)

  noise = 0.1 * rng.normal(size=(epochs.total, displays.num_displays, samples, units))
  noise = noise.astype(np.float32)
  x, trajectory = jnp.zeros(noise.shape[1:]), []
  for t, epoch in enumerate(epochs.epoch_of_step()):
    x = step(x, inputs[epoch][:, None, :]) + noise[t]
    trajectory.append(x)
  states = jnp.stack(trajectory)
  swapped = jnp.asarray(rng.random((displays.num_displays, samples)) < 0.3)
  other = jnp.take_along_axis(displays.report, 1 - displays.cued[:, None], 1)
  responses = jnp.where(swapped, other, displays.cued_report()[:, None])
  velocity = dynamics.velocity_of_map(lambda v: step(v, jnp.zeros(inputs.shape[-1])))
  numbers, figures = report.analyse(
      jax.random.key(1), states, displays, responses, epochs, num_bins=4, velocity=velocity,
      num_bootstrap=5, num_shuffles=2, num_folds=3, num_fixed_point_starts=4,
      fixed_point_steps=100)
  assert set(numbers['summary']) == set(report.SUMMARY_COLUMNS)
  assert numbers['swap_decoding']['num_swaps'] == int(swapped.sum())
  assert len(numbers['alignment']['cosine']) == epochs.total
  assert len(numbers['swap_decoding']['auc']) == epochs.trial_length
  paths = report.write_report(str(tmp_path / 'analysis'), numbers, figures, dpi=40)
  with open(paths[0]) as f:
    assert json.load(f)['summary'] == numbers['summary']
  assert {p.split('/')[-1] for p in paths[1:]} == {
      'alignment.png', 'swap_auc.png', 'cross_temporal.png', 'pca.png', 'fixed_points.png'}


def test_decodable_from_names_the_first_step_that_stays_above_chance():
  from rnn_behaviour.analysis import run_analysis  # pylint: disable=g-import-not-at-top
  epochs = task.Epochs(stimulus=2, delay=3, cue=2, post_cue=1, response=4)
  upper = np.full(8, 0.6)
  auc = np.array([0.5, 0.7, 0.5, 0.5, 0.65, 0.7, 0.8, 0.9])   # Above from step 4 on.
  assert run_analysis.decodable_from(auc, upper, epochs) == 'delay+2'
  assert run_analysis.decodable_from(np.full(8, 0.9), upper, epochs) == 'stimulus+0'
  assert run_analysis.decodable_from(auc[::-1], upper, epochs) == 'never'
