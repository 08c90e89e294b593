"""Posterior-predictive sampler: frequencies against exact weights, per-sample draws, pipeline."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import circular, task
from rnn_behaviour.behaviour import bns, data, fit_config, parametric, pipeline, stable, surrogate
from rnn_behaviour.configs import fit_csv


def model_with_draws(guess_logits, kappas, swap_mean=-1.0, emission='von_mises'):
  s = len(guess_logits)
  spec = bns.BNSSpec(num_fourier=2, emission=emission)
  rng = np.random.default_rng(0)
  col = lambda v: jnp.asarray(np.asarray(v, np.float32)[:, None])
  return surrogate.BNSResponseModel(
      swap_mean=jnp.full((s,), swap_mean, jnp.float32),
      coef=jnp.asarray(rng.normal(0, 0.7, (s, 3)), jnp.float32),
      guess_logit=col(guess_logits), kappa=col(kappas) if emission == 'von_mises' else col(
          np.zeros(s)), gamma=col(kappas) if emission != 'von_mises' else col(np.zeros(s)),
      alpha=col(np.full(s, 1.5)), spec=spec)


def window_frequencies(y, displays, half_width):
  """Fraction of each display's responses within half_width of each item, (K, N)."""
  near = np.abs(np.asarray(circular.wrap(y[:, :, None] - displays.report[:, None, :])))
  return (near < half_width).mean(1)


@pytest.mark.parametrize('emission,noise', [('von_mises', 400.0), ('wrapped_stable', 0.02)])
def test_sampler_frequencies_match_exact_weights(emission, noise):
  model = model_with_draws([-1.5], [noise], emission=emission)
  displays = task.sample_displays(jax.random.PRNGKey(0), 400, 3, cue_grid=8,
                                  min_separation_report=np.pi / 2)
  w = np.asarray(model.mixture_weights(displays))
  np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
  y = np.asarray(model.sample_responses(jax.random.PRNGKey(1), displays, 500))
  h = 0.3
  expected = w[:, 1:] + w[:, :1] * (2 * h / (2 * np.pi))   # Noise mass beyond h is negligible.
  freq = window_frequencies(y, displays, h)
  # Pooled over displays: binomial SE ~ 0.001; per display ~ 0.02.
  np.testing.assert_allclose(freq.mean(0), expected.mean(0), atol=0.006)
  assert np.abs(freq - expected).max() < 0.1
  # Item order: the target is where the cued index says, with weight above the non-targets'.
  target_w = np.take_along_axis(w[:, 1:], np.asarray(displays.cued)[:, None], 1)[:, 0]
  assert np.all(target_w >= w[:, 1:].max(1) - 1e-6)


def test_each_sample_uses_its_own_draw():
  # Two draws: one almost never guesses, one almost always does.
  model = model_with_draws([-12.0, 12.0], [50.0, 50.0])
  displays = task.sample_displays(jax.random.PRNGKey(2), 200, 2, cue_grid=8)
  w = np.asarray(model.mixture_weights(displays))
  np.testing.assert_allclose(w[:, 0], 0.5, atol=1e-3)     # Posterior-mean weights.
  y = np.asarray(model.sample_responses(jax.random.PRNGKey(3), displays, 400))
  far = np.abs(np.asarray(circular.wrap(y[:, :, None] - displays.report[:, None, :]))).min(-1)
  guess_rate = (far > 0.6).mean(1)                        # Guesses far from both items.
  # If one draw served a whole display the rates would be ~0 or ~0.6; per sample they are
  # ~0.5 * P(guess lands > 0.6 rad from both items) ~ 0.31 in every display.
  assert np.all(guess_rate > 0.15) and np.all(guess_rate < 0.5)


def test_matches_parametric_model_when_swap_function_is_its_own():
  """A one-draw BNS with f fitted exactly to a parametric f gives the same weights."""
  par = parametric.ParametricSwapModel(kind='gaussian', width=1.5, bias=-1.0,
                                       guess_logit=-3.0, kappa=8.0)
  spec = bns.BNSSpec(num_fourier=12)
  grid = np.linspace(0, np.pi, 200)
  feats = np.asarray(bns.basis_features(spec, jnp.asarray(grid), jnp.asarray(grid)))
  coef, *_ = np.linalg.lstsq(feats, np.asarray(par.swap_logit(jnp.asarray(grid))), rcond=None)
  model = surrogate.BNSResponseModel(
      swap_mean=jnp.zeros(1), coef=jnp.asarray(coef[None], jnp.float32),
      guess_logit=jnp.full((1, 1), -3.0), kappa=jnp.full((1, 1), 8.0),
      gamma=jnp.zeros((1, 1)), alpha=jnp.zeros((1, 1)), spec=spec)
  displays = task.sample_displays(jax.random.PRNGKey(4), 100, 4, cue_grid=8)
  # Up to the truncated series' error in f (~0.01 logit).
  np.testing.assert_allclose(model.mixture_weights(displays), par.mixture_weights(displays),
                             atol=2e-3)


def test_stable_sampler_matches_density():
  x = stable.sample_symmetric_stable(jax.random.PRNGKey(5), jnp.full((200000,), 1.0),
                                        jnp.float32(0.3))
  # alpha = 1: Cauchy with scale gamma; its quartiles are +-gamma.
  np.testing.assert_allclose(np.quantile(np.asarray(x), [0.25, 0.75]), [-0.3, 0.3], atol=0.01)
  x2 = stable.sample_symmetric_stable(jax.random.PRNGKey(6), jnp.full((200000,), 2.0),
                                         jnp.float32(0.3))
  assert np.std(np.asarray(x2)) == pytest.approx(0.3 * np.sqrt(2), rel=0.02)


def simulated_csv(path):
  par = parametric.ParametricSwapModel(kind='gaussian', width=1.0, bias=0.0, guess_logit=-2.5,
                                       kappa=10.0)
  tables = []
  for i, n in enumerate((2, 4)):
    displays = task.sample_displays(jax.random.PRNGKey(10 + i), 300, n, cue_grid=8)
    y = par.sample_responses(jax.random.PRNGKey(20 + i), displays, 1)[:, 0]
    t = data.from_displays(displays, y, subject=f's{i % 2}')
    tables.append(t)
  table = data.concatenate(tables)
  data.write_csv(table, path)
  return table


def test_config_validation_names_the_field():
  config = fit_csv.get_config()
  config.fit.inference = 'x'
  with pytest.raises(ValueError, match=r"config.fit.inference must be 'svi' or 'nuts', got 'x'"):
    fit_config.validate_config(config)
  config = fit_csv.get_config()
  config.fit.bns_dimension = 'both'
  with pytest.raises(ValueError, match='config.fit.bns_dimension'):
    fit_config.validate_config(config)
  config = fit_csv.get_config()
  config.fit.cv_folds = 1
  with pytest.raises(ValueError, match='config.fit.cv_folds'):
    fit_config.validate_config(config)


@pytest.mark.slow   # End to end (~1 min of compilation); the pieces are tested above.
def test_fit_behaviour_end_to_end(tmp_path):
  path = str(tmp_path / 'trials.csv')
  simulated_csv(path)
  config = fit_csv.get_config()
  config.data.path = path
  config.fit.update(svi_steps=300, cv_svi_steps=200, cv_folds=2, compare_dimensions=['report'],
                    num_posterior_samples=100, subject_effects=False)
  workdir = str(tmp_path / 'wd')
  out = pipeline.fit_behaviour(config, workdir)
  beh = os.path.join(workdir, 'behaviour')
  for name, columns in (('mixture_fits.csv', 14), ('model_comparison.csv', 5),
                        ('swap_function.csv', 8), ('ppc_nontarget_proximity.csv', 11)):
    with open(os.path.join(beh, name)) as f:
      rows = list(csv.reader(f))
    assert len(rows[0]) == columns and len(rows) > 1, name
  assert {r['model'] for r in out['comparison']} == {
      'mixture_two_component', 'mixture_three_component', 'bns_cue_von_mises',
      'bns_report_von_mises'}
  for png in ('error_histograms.png', 'swap_probability.png', 'ppc_nontarget_proximity.png'):
    assert os.path.getsize(os.path.join(beh, png)) > 1000
  model = surrogate.load_response_model(beh, 4)
  displays = task.sample_displays(jax.random.PRNGKey(0), 10, 4, cue_grid=8)
  assert model.sample_responses(jax.random.PRNGKey(1), displays, 7).shape == (10, 7)
  again = pipeline.fit_behaviour(config, workdir)          # Same config: no refit.
  assert again['timings'] == out['timings']
