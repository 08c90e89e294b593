"""Mixture models: parameter recovery, optimality of the EM fits, CSV output, CV."""

import csv
import os

import jax
import numpy as np
import pytest

from rnn_behaviour import circular
from rnn_behaviour.behaviour import data, mixture, mixture_bayes

BAYS = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'bays2009',
                    'bays_data.mat')


def simulate(seed, cells, num_trials, set_size):
  """Trials from the three-component model; cells: list of (kappa, pT, pN, pU)."""
  rng = np.random.default_rng(seed)
  tables = []
  for c, (kappa, p_t, p_n, p_u) in enumerate(cells):
    report = rng.uniform(-np.pi, np.pi, (num_trials, set_size))
    cue = rng.uniform(-np.pi, np.pi, (num_trials, set_size))
    comp = rng.choice(3, num_trials, p=[p_t, p_n, p_u])
    nt = rng.integers(1, max(set_size, 2), num_trials) if set_size > 1 else np.zeros(
        num_trials, int)
    centre = np.where(comp == 1, report[np.arange(num_trials), nt], report[:, 0])
    y = np.where(comp == 2, rng.uniform(-np.pi, np.pi, num_trials),
                 centre + rng.vonmises(0.0, kappa, num_trials))
    tables.append(data.TrialTable(
        cue=cue, report=report, cued=np.zeros(num_trials, np.int64),
        set_size=np.full(num_trials, set_size), response=circular.wrap(y),
        subject=np.full(num_trials, f's{c}', object), condition=np.full(num_trials, '', object)))
  return data.concatenate(tables)


TRUE = [(8.0, 0.7, 0.2, 0.1), (3.0, 0.5, 0.1, 0.4), (15.0, 0.85, 0.0, 0.15),
        (5.0, 0.4, 0.4, 0.2)]


def test_three_component_recovery():
  table = simulate(0, TRUE, 3000, 4)
  fit = mixture.fit(table, 'three_component')
  truth = np.array(TRUE)
  # Tolerances: about 3 binomial SEs of a weight at T = 3000 (0.025) and 12% on kappa.
  np.testing.assert_allclose(fit.p_t, truth[:, 1], atol=0.035)
  np.testing.assert_allclose(fit.p_n, truth[:, 2], atol=0.035)
  np.testing.assert_allclose(fit.p_u, truth[:, 3], atol=0.035)
  np.testing.assert_allclose(fit.kappa, truth[:, 0], rtol=0.12)
  np.testing.assert_allclose(fit.p_t + fit.p_n + fit.p_u, 1.0, atol=1e-5)


def test_two_component_recovery_and_nesting():
  cells = [(6.0, 0.8, 0.0, 0.2), (20.0, 0.95, 0.0, 0.05)]
  table = simulate(1, cells, 3000, 2)
  two = mixture.fit(table, 'two_component')
  three = mixture.fit(table, 'three_component')
  np.testing.assert_allclose(two.p_t, [0.8, 0.95], atol=0.03)
  np.testing.assert_allclose(two.kappa, [6.0, 20.0], rtol=0.12)
  assert np.all(two.p_n == 0)
  # Nested models: the three-component maximum can only be higher.
  assert np.all(three.loglik >= two.loglik - 0.01)


def test_set_size_one_has_no_swaps():
  table = simulate(2, [(10.0, 0.9, 0.0, 0.1)], 500, 1)
  fit = mixture.fit(table, 'three_component')
  assert fit.p_n[0] == 0.0
  assert mixture.num_parameters(True, [1])[0] == 2


def em_vs_reference(table, cells_to_check):
  _, d = mixture.cell_data(table)
  for three in (True, False):
    em = np.asarray(mixture.fit_em(d, three=three)['loglik'])
    for c in cells_to_check:
      ref = mixture.reference_fit(d, c, three, num_starts=2)
      assert em[c] >= ref - 0.01, (three, c, em[c], ref)


@pytest.mark.slow   # ~22 s. Fast twins: test_three_component_recovery and the polish tests.
def test_em_reaches_multistart_optimum():
  # Within 0.01 of a multi-start L-BFGS search (benchmark_behaviour.py checks all 96 Bays
  # cells x models). Subject 1, set size 6 (cell 3) is the slowest of them to converge.
  if os.path.exists(BAYS):
    em_vs_reference(data.load_bays2009(BAYS, subjects=['1']), [2, 3])
  else:
    em_vs_reference(simulate(3, TRUE[:2], 150, 6), [0, 1])


@pytest.mark.skipif(not os.path.exists(BAYS), reason='Bays 2009 file not present')
def test_subject_12_set_size_1_reaches_the_best_of_many_starts():
  # Issue 12 reported this cell 0.04 nats short; measured here EM 49.92416 against the best of
  # 3 x 162 L-BFGS starts 49.92418 (float32 round-off), so the check is at 0.005.
  table = data.load_bays2009(BAYS, subjects=['12'], set_sizes=[1])
  _, d = mixture.cell_data(table)
  em = float(mixture.fit_em(d, three=True)['loglik'][0])
  assert em >= mixture.reference_fit(d, 0, True, num_starts=20) - 0.005


def test_csv_and_information_criteria(tmp_path):
  table = simulate(4, TRUE[:2], 200, 4)
  fits = [mixture.fit(table, m) for m in mixture.MODELS]
  path = str(tmp_path / 'mixture_fits.csv')
  mixture.write_fits_csv(fits, path)
  with open(path) as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0].keys()) == mixture.FIT_COLUMNS
  assert len(rows) == 4
  for r in rows:
    k = 2 if r['model'] == 'two_component' else 3
    ll, n = float(r['loglik']), int(r['n'])
    assert n == 200 and r['condition'] == ''
    assert float(r['aic']) == pytest.approx(2 * k - 2 * ll, rel=1e-5)
    assert float(r['bic']) == pytest.approx(k * np.log(n) - 2 * ll, rel=1e-5)
    assert float(r['sd']) == pytest.approx(float(circular.kappa_to_sd(float(r['kappa']))),
                                           rel=1e-4)


def test_cross_validation_is_held_out():
  table = simulate(5, TRUE[:2], 300, 4)
  folds = np.arange(len(table)) % 3
  lpd = mixture.cross_validate(table, 'three_component', folds)
  fit = mixture.fit(table, 'three_component')
  in_sample = mixture.trial_log_density(fit, table)
  np.testing.assert_allclose(in_sample.sum(), fit.loglik.sum(), rtol=1e-5)
  assert np.all(np.isfinite(lpd)) and lpd.sum() < in_sample.sum()


def test_numpyro_model_density_is_prior_plus_likelihood():
  import numpyro
  table = simulate(7, [(8.0, 0.6, 0.3, 0.1)], 100, 4)
  _, d = mixture.cell_data(table)
  w = np.array([[0.6, 0.3, 0.1]])
  kappa = np.array([8.0])
  logp, _ = numpyro.infer.util.log_density(mixture_bayes.numpyro_model, (d,), {},
                                            dict(kappa=kappa, weights=w))
  params = dict(kappa=kappa, p_t=w[:, 0], p_n=w[:, 1], p_u=w[:, 2])
  prior = (numpyro.distributions.LogNormal(np.log(5.0), 1.5).log_prob(8.0)
           + numpyro.distributions.Dirichlet(np.ones(3)).log_prob(w[0]))
  assert float(logp) == pytest.approx(float(prior + mixture.log_likelihood(params, d)[0]),
                                      rel=1e-5)


@pytest.mark.slow
def test_numpyro_model_posterior_covers_truth():
  table = simulate(6, [(8.0, 0.6, 0.3, 0.1)], 800, 4)
  _, d = mixture.cell_data(table)
  s = mixture_bayes.fit_bayesian(jax.random.PRNGKey(0), d, num_warmup=150, num_samples=200)
  for name, true in (('kappa', 8.0), ('p_t', 0.6), ('p_n', 0.3), ('p_u', 0.1)):
    lo, hi = np.quantile(np.asarray(s[name])[:, 0], [0.005, 0.995])
    assert lo <= true <= hi, (name, lo, hi)


# --- Issue 18: fits on a boundary of the simplex, parameters on a bound ----------------------


def direct_loglik(table, kappa, p_t, p_n, p_u):
  """The three-component log-likelihood of one cell's trials, float64, written afresh here
  (the von Mises density from scipy's I0, no code shared with mixture.py)."""
  import scipy.special  # pylint: disable=g-import-not-at-top
  _, _, nt_report, mask = table.nontargets()
  vm = lambda mu: np.exp(kappa * np.cos(table.response[..., None] - mu)) / (
      2 * np.pi * scipy.special.i0(kappa))
  nts = np.where(mask, vm(nt_report), 0.0)
  f = p_t * vm(table.target_report()[:, None])[:, 0] + p_n * nts.sum(1) / mask.sum(1) + (
      p_u / (2 * np.pi))
  return float(np.log(f).sum())


def best_on_the_face(table):
  """The best log-likelihood with pU = 0 (the face where the maximum of a cell with no
  guessing lies): a dense grid over (kappa, pT), then Nelder-Mead from its best 5 points."""
  import scipy.optimize  # pylint: disable=g-import-not-at-top
  kappas, p_ts = np.linspace(0.3, 8.0, 40), np.linspace(0.0, 1.0, 41)
  grid = np.array([[direct_loglik(table, k, p, 1 - p, 0.0) for p in p_ts] for k in kappas])
  best = grid.max()
  for flat in np.argsort(grid.ravel())[-5:]:
    i, j = np.unravel_index(flat, grid.shape)
    res = scipy.optimize.minimize(
        lambda x: -direct_loglik(table, np.exp(x[0]), np.clip(x[1], 0, 1),
                                 1 - np.clip(x[1], 0, 1), 0.0),
        [np.log(kappas[i]), p_ts[j]], method='Nelder-Mead',
        options=dict(xatol=1e-7, fatol=1e-9, maxiter=2000))
    best = max(best, -res.fun)
  return best


def test_cells_with_no_guessing_reach_the_boundary_maximum():
  # Issue 18, item 9: where the maximum has guess weight 0, EM creeps towards it (on these cells
  # 250 iterations end 0.009-0.024 nats short). The fit must be within 1e-3 of a dense search
  # plus Nelder-Mead on the face pU = 0, and never below it by more than float noise elsewhere.
  cells = [(2.0, 0.4, 0.6, 0.0), (1.5, 0.3, 0.7, 0.0), (2.0, 0.6, 0.4, 0.0)]
  table = simulate(11, cells, 210, 7)
  fit = mixture.fit(table, 'three_component')
  for c in range(len(cells)):
    sub = table.select(subjects=[f's{c}'])
    best = best_on_the_face(sub)
    assert fit.loglik[c] >= best - 1e-3, (c, fit.loglik[c], best)
    # The reported log-likelihood is that of the reported parameters.
    assert fit.loglik[c] == pytest.approx(direct_loglik(
        sub, fit.kappa[c], fit.p_t[c], fit.p_n[c], fit.p_u[c]), abs=1e-6)
  assert np.all(fit.p_u < 0.01)


@pytest.mark.skipif(not os.path.exists(BAYS), reason='Bays 2009 file not present')
def test_polish_never_lowers_em_on_bays2009():
  table = data.load_bays2009(BAYS, subjects=['1', '2', '3'])
  _, d = mixture.cell_data(table)
  for model in mixture.MODELS:
    three = model == 'three_component'
    em = jax.device_get(mixture.fit_em(d, three=three))
    polished = mixture.polish(d, em, three)
    # EM's float32 log-likelihood is good to ~1e-4 on cells of ~150 trials.
    assert np.all(polished['loglik'] >= np.asarray(em['loglik']) - 2e-4), model
    np.testing.assert_allclose(polished['p_t'] + polished['p_n'] + polished['p_u'], 1.0,
                               atol=1e-12)


def test_parameters_on_a_bound_are_flagged(tmp_path):
  # Perfect responses: kappa runs to its clip and pT to 1; the CSV's warning column says so.
  table = simulate(4, [(8.0, 0.8, 0.1, 0.1)], 200, 3)
  perfect = data.TrialTable(**{**table.__dict__, 'response': table.target_report()})
  fit = mixture.fit(perfect, 'three_component')
  assert fit.kappa[0] >= mixture.KAPPA_MAX * 0.999
  path = str(tmp_path / 'fits.csv')
  mixture.write_fits_csv([fit, mixture.fit(table, 'three_component')], path)
  rows = list(csv.DictReader(open(path)))
  assert 'kappa' in rows[0]['warning'] and 'upper clip' in rows[0]['warning']
  assert 'p_t' in rows[0]['warning'] and 'at 1' in rows[0]['warning']
  assert rows[1]['warning'] == ''                # An interior fit is not flagged.
  assert mixture.bound_parameters('two_component', 1, 5.0, 0.9, 0.0, 0.1) == []
  assert mixture.bound_parameters('three_component', 4, 5.0, 0.9, 0.0, 0.1) == [
      'p_n=0 (at 0)']
