"""BNS: the Fourier GP basis, recovery of a known swap function, save/load, grid output."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import task
from rnn_behaviour.behaviour import bns, bns_cv, bns_files, data, parametric, stable, surrogate
from tests import conftest

TRUE_SWAP = parametric.ParametricSwapModel(kind='gaussian', width=1.0, bias=0.0,
                                           guess_logit=-2.5, kappa=10.0)


def simulated_table(seed=0, num_displays=3000, set_size=4, model=TRUE_SWAP):
  key_d, key_r = jax.random.split(jax.random.PRNGKey(seed))
  displays = task.sample_displays(key_d, num_displays, set_size, cue_grid=8)
  y = model.sample_responses(key_r, displays, 1)
  return data.from_displays(displays, y[:, 0])


@pytest.mark.parametrize('lengthscale', [0.4, 1.0, 2.0])
def test_fourier_weights_reproduce_periodic_kernel(lengthscale):
  t = np.linspace(-np.pi, np.pi, 33)
  q = np.asarray(bns.spectral_weights(jnp.float32(lengthscale), 30))
  approx = (q[None, :] * np.cos(t[:, None] * np.arange(31))).sum(1)
  np.testing.assert_allclose(approx, np.exp((np.cos(t) - 1) / lengthscale**2), atol=1e-5)


def test_torus_basis_is_tensor_product():
  spec = bns.BNSSpec(dimension='torus', num_fourier=3)
  dc, dr = jnp.array([0.3, -1.2]), jnp.array([2.0, 0.5])
  feats = bns.basis_features(spec, dc, dr)
  assert feats.shape == (2, spec.basis_size) == (2, 16)
  np.testing.assert_allclose(feats[:, 1 * 4 + 2], np.cos(dc) * np.cos(2 * dr), rtol=1e-5)
  spec1 = bns.BNSSpec(num_fourier=3, symmetric=False)
  assert bns.basis_features(spec1, dc, dr).shape == (2, 7)


def test_spec_validation():
  with pytest.raises(ValueError, match='dimension'):
    bns.BNSSpec(dimension='colour')
  with pytest.raises(ValueError, match='emission'):
    bns.BNSSpec(emission='gauss')


def test_wrapped_stable_density():
  x = np.linspace(-np.pi, np.pi, 2001)[:-1]
  cos = np.cos(x[:, None] * np.arange(1, 65))
  for alpha, gamma in ((2.0, 0.3), (1.0, 0.2), (1.5, 0.5)):
    dens = np.exp(stable.stable_log_density(jnp.asarray(cos, jnp.float32),
                                          jnp.full(x.shape, gamma), jnp.full(x.shape, alpha)))
    assert np.sum(dens) * (2 * np.pi / len(x)) == pytest.approx(1.0, abs=1e-3)
  # alpha = 1 is the wrapped Cauchy with rho = exp(-gamma).
  rho = np.exp(-0.2)
  cauchy = (1 - rho**2) / (2 * np.pi * (1 + rho**2 - 2 * rho * np.cos(x)))
  dens = np.exp(stable.stable_log_density(jnp.asarray(cos, jnp.float32), jnp.full(x.shape, 0.2),
                                        jnp.full(x.shape, 1.0)))
  np.testing.assert_allclose(dens, cauchy, rtol=2e-3)


def _fit_and_save_recovery(directory: str):
  fit = bns.fit(jax.random.PRNGKey(1), simulated_table(), bns.BNSSpec(num_fourier=6),
                num_steps=1500, num_samples=400)
  bns_files.save(fit, directory)


@pytest.fixture(scope='session')
def recovered_fit(tmp_path_factory):
  """BNS fitted to `simulated_table()` (3,000 displays of 4 items), once for the session (and
  its workers), read back from its files."""
  return bns_files.load(conftest.built_once(tmp_path_factory, 'bns_recovered_fit',
                                            _fit_and_save_recovery))


def test_swap_function_recovered_inside_band(recovered_fit):
  d = np.pi / 4 * np.arange(1, 5)       # Every distance the 8-location grid produces.
  f = np.asarray(recovered_fit.swap_logit(4, d, d))
  lo, hi = np.quantile(f, [0.05, 0.95], axis=0)
  true = np.asarray(TRUE_SWAP.swap_logit(d))
  inside = (lo <= true) & (true <= hi)
  assert inside.sum() >= 3, (lo, true, hi)
  np.testing.assert_allclose(f.mean(0), true, atol=0.8)
  # The fitted function falls with distance, as the true one does.
  assert f.mean(0)[0] > f.mean(0)[2] + 1.0
  s = recovered_fit.samples
  assert np.quantile(s['guess_logit'], 0.02) < -2.5 < np.quantile(s['guess_logit'], 0.98)
  assert np.mean(s['kappa']) == pytest.approx(10.0, rel=0.1)


def test_save_load_round_trip_and_grid(recovered_fit, tmp_path):
  directory = bns_files.save(recovered_fit, str(tmp_path / 'bns_fit'), config={'a': 1})
  loaded = bns_files.load(directory)
  assert loaded.spec == recovered_fit.spec and loaded.labels == recovered_fit.labels
  for k, v in recovered_fit.samples.items():
    np.testing.assert_array_equal(loaded.samples[k], v)
  assert loaded.guide_params is not None and loaded.info['config'] == {'a': 1}
  rows = bns.swap_function_grid(loaded, num_points=11)
  assert len(rows) == 11 and set(rows[0]) == set(bns.SWAP_COLUMNS)
  assert all(r['logit_lower'] <= r['logit_mean'] <= r['logit_upper'] for r in rows)
  assert all(r['dimension'] == 'cue' and r['set_size'] == 4 for r in rows)
  model = surrogate.load_response_model(str(tmp_path), 4)
  assert model.num_draws == recovered_fit.num_samples
  with pytest.raises(ValueError, match='set size 3'):
    surrogate.load_response_model(str(tmp_path), 3)


@pytest.mark.slow   # ~30 s of SVI. Fast twins: test_cross_validation_reads_back_finished_folds_
# without_fitting (the folds' path) and tests/test_mixture.py::test_cross_validation_is_held_out.
def test_cross_validation_prefers_true_structure():
  table = simulated_table(seed=2, num_displays=1000)
  folds = bns_cv.make_folds(jax.random.PRNGKey(0), len(table), 2)
  assert np.bincount(folds).tolist() == [500, 500]
  lpd_cue = bns_cv.cross_validate(jax.random.PRNGKey(3), table, bns.BNSSpec(dimension='cue'),
                               folds, num_steps=500, num_samples=100)
  lpd_rep = bns_cv.cross_validate(jax.random.PRNGKey(3), table, bns.BNSSpec(dimension='report'),
                               folds, num_steps=500, num_samples=100)
  assert np.all(np.isfinite(lpd_cue))
  # Swaps follow cue distance: the cue model predicts held-out trials better.
  assert lpd_cue.sum() > lpd_rep.sum() + 5.0


@pytest.mark.slow   # NUTS compiles for ~30 s; the model it samples is the one SVI tests fit.
def test_nuts_small():
  table = simulated_table(seed=4, num_displays=300, set_size=2)
  fit = bns.fit(jax.random.PRNGKey(0), table, bns.BNSSpec(num_fourier=3), inference='nuts',
                num_warmup=60, num_samples=60)
  assert fit.samples['coef'].shape == (60, 1, 4)
  assert np.all(np.isfinite(fit.samples['kappa'])) and fit.info['divergences'] < 10


def test_likelihood_matches_direct_computation_torus_stable_subjects():
  """The model's observed site, scored by NumPyro's `log_likelihood` (`BNSFit.
  trial_log_likelihood`), against a plain numpy mixture for the richest variant: the numbers
  the hand-written likelihood gave before the model had an observed site."""
  rng = np.random.default_rng(0)
  tables = [simulated_table(seed=9 + i, num_displays=40, set_size=n)
            for i, n in enumerate((2, 3))]
  for i, t in enumerate(tables):
    object.__setattr__(t, 'subject', np.full(len(t), f's{i}', object))
  table = data.concatenate(tables)
  spec = bns.BNSSpec(dimension='torus', num_fourier=2, emission='wrapped_stable',
                     subject_effects=True, stable_terms=64)
  d, labels = bns.make_data(spec, table)
  assert labels.num_functions(spec) == 2 and labels.num_groups(spec) == 4
  params = dict(swap_mean=np.array([-1.0, -2.0]), coef=rng.normal(0, 0.5, (2, 9)),
                guess_logit=np.array([-2.0, -1.0, -3.0, 0.0]),
                gamma=np.array([0.2, 0.3, 0.4, 0.5]), alpha=np.array([2.0, 1.0, 1.5, 1.2]))
  # One posterior draw; coef_raw is recovered from coef by BNSFit.latent_samples.
  draw = dict(params, lengthscale=np.array([0.8, 1.3]), amplitude=np.array(1.5))
  fit = bns.BNSFit(spec=spec, labels=labels, info={},
                   samples={k: np.asarray(v, np.float32)[None] for k, v in draw.items()})
  ll = np.asarray(fit.trial_log_likelihood(table))[0]
  x = np.linspace(-np.pi, np.pi, 4001)[:-1]
  for t in range(0, len(table), 7):
    n, k = table.set_size[t], table.cued[t]
    fi = [2, 3].index(n)
    g = int(table.subject[t][1]) * 2 + fi
    logits = [params['guess_logit'][g]]
    for j in range(n):
      if j == k:
        logits.append(0.0)
        continue
      dc = np.angle(np.exp(1j * (table.cue[t, j] - table.cue[t, k])))
      dr = np.angle(np.exp(1j * (table.report[t, j] - table.report[t, k])))
      feats = np.outer(np.cos(np.arange(3) * dc), np.cos(np.arange(3) * dr)).ravel()
      logits.append(params['swap_mean'][fi] + feats @ params['coef'][fi])
    w = np.exp(logits - np.max(logits))
    w /= w.sum()
    # Wrapped stable density by summing the characteristic function's series directly.
    def stable_density(e):
      p = np.arange(1, 65)
      return (1 + 2 * np.sum(np.exp(-(params['gamma'][g] * p)**params['alpha'][g])
                             * np.cos(p * e))) / (2 * np.pi)
    dens = w[0] / (2 * np.pi) + sum(w[1 + j] * stable_density(table.response[t] - table.report[t, j])
                                    for j in range(n))
    assert ll[t] == pytest.approx(np.log(dens), abs=2e-4), t


@pytest.mark.slow   # Compiles a separate SVI (~40 s); the likelihood test above covers it.
def test_torus_stable_subject_effects_run():
  tables = [simulated_table(seed=5 + i, num_displays=100, set_size=n)
            for i, n in enumerate((2, 4))]
  for i, t in enumerate(tables):
    object.__setattr__(t, 'subject', np.full(len(t), f's{i}', object))
  table = data.concatenate(tables)
  spec = bns.BNSSpec(dimension='torus', num_fourier=2, emission='wrapped_stable',
                     subject_effects=True, stable_terms=32)
  fit = bns.fit(jax.random.PRNGKey(0), table, spec, num_steps=100, num_samples=50,
                guide='normal')
  assert fit.samples['gamma'].shape == (50, 4) and fit.samples['coef'].shape == (50, 2, 9)
  rows = bns.swap_function_grid(fit, num_points=5)
  assert {r['dimension'] for r in rows} == {'cue', 'report'} and len(rows) == 20


@pytest.mark.parametrize('emission', ['von_mises', 'wrapped_stable'])
def test_predictive_replicates_have_the_mixture_moments(emission):
  """`predictive_responses` (NumPyro's `Predictive` on the model's unobserved site) against the
  exact first trigonometric moment of every trial's mixture under a fixed draw:
  E[exp(i (y - r_k))] = sum_j w_j rho e^{i (r_j - r_k)}, rho = I1/I0(kappa) (von Mises) or
  exp(-gamma^alpha) (wrapped stable), the guess contributing 0."""
  table = simulated_table(seed=12, num_displays=150, set_size=3)
  spec = bns.BNSSpec(num_fourier=2, emission=emission)
  labels = bns.labels_of(table)
  draw = dict(swap_mean=np.array([-0.5]), coef=np.array([[0.3, -0.4, 0.2]]),
              guess_logit=np.array([-1.5]), lengthscale=np.array([1.0]),
              amplitude=np.array(1.0))
  draw.update(dict(kappa=np.array([6.0])) if emission == 'von_mises'
              else dict(gamma=np.array([0.3]), alpha=np.array([1.5])))
  fit = bns.BNSFit(spec=spec, labels=labels, info={},
                   samples={k: np.asarray(v, np.float32)[None] for k, v in draw.items()})
  reps = bns.predictive_responses(jax.random.PRNGKey(0), fit, table, num_draws=800)
  assert reps.shape == (800, len(table)) and np.all(np.abs(reps) <= np.pi)
  d, _ = bns.make_data(spec, table, labels)
  w = np.asarray(jnp.exp(bns.trial_log_weights(
      {k: jnp.asarray(v[0]) for k, v in fit.samples.items()}, d)))          # (T, 2 + J)
  if emission == 'von_mises':
    rho = float(jax.scipy.special.i1e(6.0) / jax.scipy.special.i0e(6.0))
  else:
    rho = float(np.exp(-0.3**1.5))
  centres = np.asarray(d.centres)
  target = table.target_report()
  exact = rho * np.sum(w[:, 1:] * np.exp(1j * (centres - target[:, None])), axis=1)
  observed = np.mean(np.exp(1j * (reps - target)), axis=0)
  # Each trial's mean of 800 unit vectors: standard error <= 1 / sqrt(800) per component.
  assert np.max(np.abs(observed - exact)) < 5 / np.sqrt(800)
  assert abs(np.mean(observed - exact)) < 5 / np.sqrt(800 * len(table))


# --- Issue 18: interrupted fits resume from what finished whole ------------------------------


class Interrupted(Exception):
  pass


def test_cross_validation_reads_back_finished_folds_without_fitting():
  # The fast half of the resume test below: every fold already saved, nothing is fitted.
  table = simulated_table(seed=5, num_displays=30, set_size=2)
  folds = bns_cv.make_folds(jax.random.PRNGKey(0), len(table), 2)
  done = {k: dict(lpd=[-1.0 - k] * int(np.sum(folds == k)),
                  report=dict(fold=k, num_heldout=int(np.sum(folds == k)), status='ok',
                              attempts=[])) for k in (0, 1)}
  called = []
  res = bns_cv.cross_validate_folds(jax.random.PRNGKey(3), table, bns.BNSSpec(num_fourier=2),
                                 folds, num_steps=10, done=done,
                                 on_fold=lambda k, r: called.append(k))
  assert called == [] and all(f['reused'] for f in res.folds)
  np.testing.assert_array_equal(res.lpd, np.where(folds == 0, -1.0, -2.0))


def test_cross_validation_fits_every_fold_on_its_own_training_trials():
  """The fitting path of cross_validate_folds (the slow resume test below fits it twice): both
  folds fitted together, scored on their held-out trials, each reported and saved once."""
  table = simulated_table(seed=5, num_displays=40, set_size=2)
  folds = bns_cv.make_folds(jax.random.PRNGKey(0), len(table), 2)
  saved = {}
  res = bns_cv.cross_validate_folds(jax.random.PRNGKey(3), table,
                                    bns.BNSSpec(num_fourier=2, subject_effects=False), folds,
                                    num_steps=100, num_samples=10, guide='normal',
                                    on_fold=saved.__setitem__)
  assert sorted(saved) == [0, 1] and res.skipped == []
  assert [(f['fold'], f['status'], f['num_heldout']) for f in res.folds] == [
      (k, 'ok', int(np.sum(folds == k))) for k in (0, 1)]
  assert np.all(np.isfinite(res.lpd))
  for k in (0, 1):                                   # What a resumed run would read back.
    np.testing.assert_allclose(saved[k]['lpd'], res.lpd[folds == k], rtol=1e-6)
  # Responses drawn with kappa 10 around mostly the target: the fitted model predicts held-out
  # trials far better than the uniform density log(1 / 2 pi) = -1.84.
  assert np.mean(res.lpd) > -1.2, np.mean(res.lpd)


# Fast twin: the test above (the folds' fitting path) and the read-back test.
@pytest.mark.slow   # Two vmapped SVI fits: 20 min measured with the 2 cores at load 23.
def test_cross_validation_resumes_from_the_folds_that_finished():
  table = simulated_table(seed=5, num_displays=60, set_size=2)
  folds = bns_cv.make_folds(jax.random.PRNGKey(0), len(table), 3)
  spec = bns.BNSSpec(num_fourier=2, subject_effects=False)
  kwargs = dict(num_steps=20, num_samples=10, guide='normal')
  saved = {}
  fresh = bns_cv.cross_validate_folds(jax.random.PRNGKey(3), table, spec, folds,
                                   on_fold=saved.__setitem__, **kwargs)
  assert sorted(saved) == [0, 1, 2]
  # A run killed once fold 0 was scored had saved only that fold.
  again = []
  resumed = bns_cv.cross_validate_folds(jax.random.PRNGKey(3), table, spec, folds,
                                     done={0: saved[0]}, on_fold=lambda k, r: again.append(k),
                                     **kwargs)
  assert again == [1, 2]                        # Only the unfinished folds were fitted.
  assert [f.get('reused', False) for f in resumed.folds] == [True, False, False]
  # Fold 0 read back exactly; folds 1 and 2, refitted together, are the fresh run's fits.
  np.testing.assert_array_equal(resumed.lpd[folds == 0], fresh.lpd[folds == 0])
  np.testing.assert_allclose(resumed.lpd, fresh.lpd, rtol=1e-5, atol=1e-5)


def test_saved_fit_is_marked_whole_only_after_its_arrays(tmp_path, monkeypatch):
  spec = bns.BNSSpec(num_fourier=2)
  small = bns.BNSFit(spec=spec, labels=bns.Labels(set_sizes=(2,), subjects=('1',)),
                     samples={'swap_mean': np.zeros((5, 1)), 'kappa': np.ones((5, 1))},
                     info={'cache_key': 'k'}, guide_params={'loc': np.zeros(3)})
  directory = str(tmp_path / 'bns_fit')
  bns_files.save(small, directory)
  assert bns_files.load(directory).num_samples == 5

  def killed(path, arrays):
    raise Interrupted

  monkeypatch.setattr(bns_files, '_write_npz', killed)
  with pytest.raises(Interrupted):
    bns_files.save(small, directory)
  # A run killed while rewriting the arrays leaves no fit.json: a rerun refits.
  assert not (tmp_path / 'bns_fit' / 'fit.json').exists()
