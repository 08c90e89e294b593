"""The shared circular helpers: the one von Mises density, nearest-item label and binning rule."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats

from rnn_behaviour import circular
from rnn_behaviour import task


@pytest.mark.parametrize('kappa', [0.0, 0.5, 8.0, 300.0])
def test_von_mises_density_normalises_and_matches_scipy_and_numpyro(kappa):
  x = np.linspace(-np.pi, np.pi, 20001)
  log_p = np.asarray(circular.log_von_mises(jnp.asarray(x), 0.3, kappa), np.float64)
  # Trapezoid rule on a periodic integrand is spectrally accurate.
  assert np.trapezoid(np.exp(log_p), x) == pytest.approx(1.0, abs=1e-5)
  probe = np.linspace(-3.1, 3.1, 13)
  mine = np.asarray(circular.log_von_mises(jnp.asarray(probe), 0.3, kappa))
  np.testing.assert_allclose(mine, np.asarray(circular.log_von_mises_from_cos(
      jnp.cos(jnp.asarray(probe) - 0.3), kappa)), rtol=0, atol=1e-6)
  if kappa > 0:
    ref = scipy.stats.vonmises.logpdf(probe, kappa, loc=0.3)
    np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-4)
    numpyro_log_p = dist.VonMises(0.3, kappa).log_prob(jnp.asarray(probe))
    np.testing.assert_allclose(mine, np.asarray(numpyro_log_p), rtol=1e-5, atol=1e-4)


def test_nearest_item_tie_goes_to_the_cued_item_then_the_lowest_index():
  items = np.array([[0.0, 1.0, -1.0],     # response 0.5: items 0 and 1 equally near.
                    [0.0, 1.0, -1.0],
                    [2.0, 1.0, 1.0],      # response 1.0: items 1 and 2 both exact.
                    [3.0, -3.0, 0.0]])    # response pi: items 0 and 1 equidistant across pi.
  response = np.array([0.5, 0.5, 1.0, np.pi])
  assert circular.nearest_item(response, items).tolist() == [0, 0, 1, 0]
  cued = np.array([1, 2, 2, 1])
  # The cued item wins a tie it is part of; otherwise the lowest index among the nearest.
  assert circular.nearest_item(response, items, preferred=cued).tolist() == [1, 0, 2, 1]
  # Padding never counts; jax and numpy inputs agree.
  mask = np.array([[False, True, True]] * 4)
  assert circular.nearest_item(response, items, mask=mask).tolist() == [1, 1, 1, 1]
  assert np.asarray(circular.nearest_item(jnp.asarray(response), jnp.asarray(items),
                                          preferred=jnp.asarray(cued))).tolist() == [1, 0, 2, 1]


def test_bays2009_ties_and_the_old_rules():
  """Bays 2009 responses are continuous: the one exact tie (two items of one colour) goes to
  the target under every rule the modules used before (argmin, target-wins)."""
  from rnn_behaviour.behaviour import data  # pylint: disable=g-import-not-at-top
  path = '../shared/data/bays2009/bays_data.mat'
  try:
    table = data.load_bays2009(path)
  except FileNotFoundError:
    pytest.skip('Bays 2009 data not available')
  mask = table.item_mask()
  items = np.where(mask, table.report, 0.0)
  new = circular.nearest_item(table.response, items, preferred=table.cued, mask=mask)
  old = circular.nearest_item(table.response, items, mask=mask)       # plain argmin
  assert np.sum(new != old) == 0


def test_bins_left_closed_last_closed_and_exact_edges_from_float32_grids():
  edges = np.linspace(np.pi / 4, np.pi, 5)        # The evaluation's default cue bins.
  assert circular.bin_index(np.array([np.pi / 4, 1.0, edges[1], edges[2] - 1e-3, np.pi]),
                            edges).tolist() == [0, 0, 1, 1, 3]
  # Out of range: clipped into the end bins.
  assert circular.bin_index(np.array([0.0, 4.0]), edges).tolist() == [0, 3]
  # Grid distances computed the way the task computes them (float32 cue features on 8
  # locations): pi/4, pi/2, 3 pi/4, pi are exactly edges of 3 bins over [pi/4, pi] and of 8
  # bins over [0, pi], and each lands in the bin that starts there (pi in the last).
  displays = task.sample_displays(jax.random.PRNGKey(0), 400, 4, cue_grid=8)
  distance = np.asarray(task.cue_distances(displays))[np.asarray(task.nontarget_mask(displays))]
  assert distance.dtype == np.float32
  exact = np.round(distance / (np.pi / 4)).astype(int)            # 1..4 quarter turns.
  assert set(exact.tolist()) == {1, 2, 3, 4}
  three = np.linspace(np.pi / 4, np.pi, 4)
  np.testing.assert_array_equal(circular.bin_index(distance, three), np.minimum(exact - 1, 2))
  eight = np.linspace(0, np.pi, 9)
  np.testing.assert_array_equal(circular.bin_index(distance, eight), np.minimum(2 * exact, 7))
  # The same through jax.
  np.testing.assert_array_equal(np.asarray(circular.bin_index(jnp.asarray(distance), eight)),
                                np.minimum(2 * exact, 7))


def test_distinct_values_merge_round_off_and_keep_exact_grids():
  # Issue 18: pi/4 from angles saved to 6 decimals is 0.785398 on one trial, 0.785399 on another.
  grid = np.arange(1, 5) * np.pi / 4
  saved = np.concatenate([np.round(grid, 6), np.round(grid, 6) + 1e-6, grid])
  values, index = circular.distinct_values(saved)
  np.testing.assert_array_equal(values, np.round(grid, 6))
  np.testing.assert_array_equal(index, np.tile(np.arange(4), 3))
  # Exactly representable grid data give what np.unique(np.round(d, 6)) gave.
  exact, exact_index = circular.distinct_values(np.repeat(grid, 3))
  np.testing.assert_array_equal(exact, np.unique(np.round(grid, 6)))
  np.testing.assert_array_equal(exact_index, np.repeat(np.arange(4), 3))
  assert circular.distinct_values(np.zeros(0))[0].size == 0

