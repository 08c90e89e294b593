"""`fit_behaviour(config, workdir)`: fit the behavioural models a config names, write the results.

Into `<workdir>/behaviour/`:

  mixture_fits.csv      per cell x mixture model: subject, set_size, condition, model, kappa,
                        sd, p_t, p_n, p_u, loglik, n, aic, bic.
  bns_fit/              the BNS fit (fit.json with spec and config, samples.npz, guide params);
                        `surrogate.load_response_model(<workdir>/behaviour, N)` reads it.
  swap_function.csv     set_size, dimension, distance, logit_mean, logit_lower, logit_upper
                        (90% band over posterior draws).
  model_comparison.csv  model, heldout_lpd, se: k-fold held-out log predictive density (summed
                        over trials, nats) and its standard error sqrt(T var(lpd_t)).
  error_histograms.png  response-error histograms per set size with each model's predictive
                        error density on the same trials.
  swap_probability.png  per set size: P(report a non-target) against its cue distance, BNS
                        posterior mean and 90% band; the binned empirical rate of responses
                        nearest a non-target, with the rate BNS predicts for the same statistic.
  summary.json          what was written and headline numbers; a rerun with the same config
                        returns it without refitting.
"""

from __future__ import annotations

import csv
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour.behaviour import bns as bns_lib
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import mixture
from rnn_behaviour.behaviour import surrogate

COMPARISON_COLUMNS = ('model', 'heldout_lpd', 'se')


def _check(value, allowed, name):
  if value not in allowed:
    raise ValueError(f'{name} must be ' + ' or '.join(repr(a) for a in allowed)
                     + f', got {value!r}')


def validate_config(config) -> None:
  """Raises ValueError naming the first bad field of the `data` and `fit` blocks."""
  for block in ('data', 'fit'):
    if block not in config:
      raise ValueError(f'config.{block} is missing (use configs/fit_bays2009.py or fit_csv.py)')
  d, f = config.data, config.fit
  _check(d.format, ('bays2009', 'csv'), 'config.data.format')
  _check(d.angle_unit, data_lib.ANGLE_UNITS, 'config.data.angle_unit')
  for name in ('subjects', 'set_sizes', 'conditions'):
    if not isinstance(d[name], (list, tuple)):
      raise ValueError(f'config.data.{name} must be a list (empty: all), got {d[name]!r}')
  _check(f.inference, bns_lib.INFERENCES, 'config.fit.inference')
  _check(f.bns_dimension, bns_lib.DIMENSIONS, 'config.fit.bns_dimension')
  _check(f.emission, bns_lib.EMISSIONS, 'config.fit.emission')
  _check(f.guide, ('mvn', 'normal'), 'config.fit.guide')
  for m in f.mixture_models:
    _check(m, mixture.MODELS, 'config.fit.mixture_models[...]')
  for m in f.compare_dimensions:
    _check(m, bns_lib.DIMENSIONS, 'config.fit.compare_dimensions[...]')
  for m in f.compare_emissions:
    _check(m, bns_lib.EMISSIONS, 'config.fit.compare_emissions[...]')
  if f.cv_folds == 1 or f.cv_folds < 0:
    raise ValueError(f'config.fit.cv_folds must be 0 (no comparison) or >= 2, got {f.cv_folds}')
  for name in ('svi_steps', 'num_posterior_samples', 'num_fourier'):
    if f[name] < (0 if name == 'num_fourier' else 1):
      raise ValueError(f'config.fit.{name} must be positive, got {f[name]}')


def _write_rows(path, columns, rows):
  with open(path, 'w', newline='') as fh:
    writer = csv.DictWriter(fh, fieldnames=columns)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in row.items()})


def _variant_name(spec: bns_lib.BNSSpec) -> str:
  return f'bns_{spec.dimension}_{spec.emission}'


def _bns_kwargs(fc, cv: bool = False):
  steps = int(fc.cv_svi_steps) if cv and fc.get('cv_svi_steps', 0) else int(fc.svi_steps)
  return dict(num_steps=steps, learning_rate=float(fc.svi_learning_rate), guide=fc.guide)


def _config_dict(config) -> dict:
  return json.loads(config.to_json_best_effort()) if hasattr(config, 'to_json_best_effort') \
      else dict(config)


def fit_behaviour(config, workdir: str) -> dict:
  """Fits mixtures and BNS to the data `config.data` names; writes `<workdir>/behaviour/*`.

  Returns a dict: `dir`, paths of every file written (`mixture_fits`, `model_comparison`,
  `swap_function`, `bns_fit`, `plots`), `timings` (seconds) and `comparison` rows.
  """
  validate_config(config)
  out = os.path.join(workdir, 'behaviour')
  os.makedirs(out, exist_ok=True)
  cfg = _config_dict(config)
  summary_path = os.path.join(out, 'summary.json')
  if os.path.exists(summary_path):
    with open(summary_path) as fh:
      previous = json.load(fh)
    if previous.get('config', {}).get('data') == cfg.get('data') and \
        previous.get('config', {}).get('fit') == cfg.get('fit'):
      return previous
  fc = config.fit
  table = data_lib.load(config.data)
  key = jax.random.PRNGKey(int(fc.seed))
  key_fit, key_cv, key_plot = jax.random.split(key, 3)
  timings = {}

  # 1. Mixture models, every cell at once.
  t0 = time.time()
  fits = [mixture.fit(table, m) for m in fc.mixture_models]
  timings['mixture'] = time.time() - t0
  paths = dict(mixture_fits=os.path.join(out, 'mixture_fits.csv'))
  mixture.write_fits_csv(fits, paths['mixture_fits'])

  # 2. The main BNS fit.
  spec = bns_lib.spec_from_config(fc)
  t0 = time.time()
  fit = bns_lib.fit(key_fit, table, spec, inference=fc.inference,
                    num_samples=int(fc.num_posterior_samples),
                    num_warmup=int(fc.nuts_warmup), **_bns_kwargs(fc))
  timings['bns'] = time.time() - t0
  paths['bns_fit'] = bns_lib.save(fit, os.path.join(out, surrogate.FIT_SUBDIR), config=cfg)
  paths['swap_function'] = os.path.join(out, 'swap_function.csv')
  _write_rows(paths['swap_function'], bns_lib.SWAP_COLUMNS, bns_lib.swap_function_grid(fit))

  # 3. Model comparison by k-fold held-out log predictive density.
  comparison = []
  if fc.cv_folds:
    t0 = time.time()
    folds = bns_lib.make_folds(key_cv, len(table), int(fc.cv_folds))
    pointwise = {}
    for m in fc.mixture_models:
      pointwise[f'mixture_{m}'] = mixture.cross_validate(table, m, folds)
    variants = [spec] + [
        bns_lib.BNSSpec(**dict(spec.to_json(), dimension=dim, emission=em))
        for dim in fc.compare_dimensions for em in fc.compare_emissions]
    for i, v in enumerate(variants):
      name = _variant_name(v)
      if name not in pointwise:
        pointwise[name] = bns_lib.cross_validate(jax.random.fold_in(key_cv, i), table, v, folds,
                                                 **_bns_kwargs(fc, cv=True))
    for name, lpd in pointwise.items():
      comparison.append(dict(model=name, heldout_lpd=float(lpd.sum()),
                             se=float(np.sqrt(len(lpd) * lpd.var()))))
    comparison.sort(key=lambda r: -r['heldout_lpd'])
    timings['cross_validation'] = time.time() - t0
  paths['model_comparison'] = os.path.join(out, 'model_comparison.csv')
  _write_rows(paths['model_comparison'], COMPARISON_COLUMNS, comparison)

  # 4. Plots.
  t0 = time.time()
  paths['plots'] = [plot_error_histograms(table, fits, fit, os.path.join(out,
                                                                         'error_histograms.png'),
                                          key_plot),
                    plot_swap_probability(table, fit, os.path.join(out, 'swap_probability.png'),
                                          jax.random.fold_in(key_plot, 1))]
  timings['plots'] = time.time() - t0
  summary = dict(dir=out, config=cfg, timings=timings, comparison=comparison,
                 num_trials=len(table), bns_info=fit.info, **paths)
  with open(summary_path, 'w') as fh:
    json.dump(summary, fh, indent=2, default=str)
  return summary


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _error_density_table(table: data_lib.TrialTable, grid: np.ndarray) -> data_lib.TrialTable:
  """Every trial repeated with response r_k + e for each grid error e (T * G rows)."""
  g = len(grid)
  rep = table.take(np.repeat(np.arange(len(table)), g))
  response = circular.wrap(rep.target_report() + np.tile(grid, len(table)))
  return data_lib.TrialTable(cue=rep.cue, report=rep.report, cued=rep.cued,
                             set_size=rep.set_size, response=response, subject=rep.subject,
                             condition=rep.condition, source=rep.source)


def plot_error_histograms(table, mixture_fits, fit: bns_lib.BNSFit, path: str, key,
                          max_trials: int = 300, num_draws: int = 50) -> str:
  """Histograms of response error per set size, with each model's predictive error density.

  A model's curve is its density of y - r_k averaged over the set size's trials (a random
  subset of `max_trials`), so it accounts for the displays' non-target positions; BNS uses
  the posterior predictive (mean over `num_draws` draws).
  """
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  sizes = table.set_sizes()
  grid = np.linspace(-np.pi, np.pi, 121)
  fig, axes = plt.subplots(1, len(sizes), figsize=(3.6 * len(sizes), 3.2), squeeze=False)
  rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
  thin = fit.num_samples > num_draws
  draws = rng.choice(fit.num_samples, num_draws, replace=False) if thin else slice(None)
  small = bns_lib.BNSFit(spec=fit.spec, labels=fit.labels,
                         samples={k: v[draws] for k, v in fit.samples.items()}, info=fit.info)
  for ax, n in zip(axes[0], sizes):
    sub = table.select(set_sizes=[n])
    ax.hist(sub.error(), bins=40, range=(-np.pi, np.pi), density=True, color='0.8',
            label=f'data (T={len(sub)})')
    pick = rng.choice(len(sub), min(max_trials, len(sub)), replace=False)
    expanded = _error_density_table(sub.take(pick), grid)
    for fits in mixture_fits:
      dens = np.exp(mixture.trial_log_density(fits, expanded)).reshape(len(pick), -1).mean(0)
      ax.plot(grid, dens, label=fits.model.replace('_', '-'))
    ll = np.asarray(small.trial_log_likelihood(expanded))          # (S, T * G)
    dens = np.exp(ll).mean(0).reshape(len(pick), -1).mean(0)
    ax.plot(grid, dens, 'k--', label=f'BNS ({fit.spec.dimension})')
    ax.set_title(f'set size {n}')
    ax.set_xlabel('error (rad)')
  axes[0, 0].set_ylabel('density')
  axes[0, -1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _distance_bins(distance: np.ndarray, max_unique: int = 12, num_bins: int = 8):
  """Bin index of each |cue distance| and the bin centres: exact values when they are few."""
  values = np.unique(np.round(distance, 6))
  if len(values) <= max_unique:
    return np.searchsorted(values, np.round(distance, 6)), values
  edges = np.linspace(0, np.pi, num_bins + 1)
  return np.clip(np.digitize(distance, edges) - 1, 0, num_bins - 1), (edges[1:] + edges[:-1]) / 2


def swap_probability_by_distance(table, fit: bns_lib.BNSFit, set_size: int, key,
                                 band: float = 0.9, responses_per_trial: int = 20):
  """Per-non-target swap statistics against |cue distance| for one set size.

  Returns dict: centres (B,); model_mean, model_lower, model_upper (B,): P(report this
  non-target) under the posterior (mean, central band over draws), averaged over the data's
  non-targets in each bin; empirical (B,), empirical_se (B,): fraction of trials whose response
  is nearest (circularly) to that non-target; predicted_nearest (B,): the same fraction under
  posterior-predictive responses on the same displays; count (B,).
  """
  sub = table.select(set_sizes=[set_size])
  d, _ = bns_lib.make_data(fit.spec, sub, fit.labels)
  params = {k: jnp.asarray(v) for k, v in fit.samples.items()}
  w = np.asarray(jax.lax.map(lambda p: jnp.exp(bns_lib.trial_log_weights(p, d)), params,
                             batch_size=32))[..., 2:]                          # (S, T, J)
  dc, _, nt_report, mask = sub.nontargets()
  bins, centres = _distance_bins(np.abs(dc[mask]))
  # Nearest item to the response, among target and non-targets.
  def nearest_rate(resp):
    dist_t = np.abs(circular.wrap(resp - sub.target_report()[:, None]))       # (T, R)
    dist_n = np.where(mask[:, :, None], np.abs(circular.wrap(resp[:, None, :]
                                                             - nt_report[:, :, None])), np.inf)
    best_n = dist_n.min(1)
    return ((dist_n == best_n[:, None]) & (best_n < dist_t)[:, None]).mean(-1)  # (T, J)
  empirical = nearest_rate(sub.response[:, None])
  model_resp = surrogate.from_fit(fit, set_size).sample_responses(key, sub.displays(),
                                                                  responses_per_trial)
  predicted = nearest_rate(np.asarray(model_resp, np.float64))
  lo_q, hi_q = (1 - band) / 2, 1 - (1 - band) / 2
  per_draw = np.stack([np.bincount(bins, weights=wd[mask], minlength=len(centres))
                       for wd in w]) / np.bincount(bins, minlength=len(centres))
  count = np.bincount(bins, minlength=len(centres))
  emp = np.bincount(bins, weights=empirical[mask], minlength=len(centres)) / count
  return dict(centres=centres, model_mean=per_draw.mean(0),
              model_lower=np.quantile(per_draw, lo_q, 0),
              model_upper=np.quantile(per_draw, hi_q, 0), empirical=emp,
              empirical_se=np.sqrt(emp * (1 - emp) / count),
              predicted_nearest=np.bincount(bins, weights=predicted[mask],
                                            minlength=len(centres)) / count, count=count)


def plot_swap_probability(table, fit: bns_lib.BNSFit, path: str, key) -> str:
  """Swap probability against cue distance per set size (see `swap_probability_by_distance`)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  sizes = [n for n in table.set_sizes() if n > 1]
  fig, axes = plt.subplots(1, max(len(sizes), 1), figsize=(3.8 * max(len(sizes), 1), 3.2),
                           squeeze=False)
  for i, n in enumerate(sizes):
    ax = axes[0, i]
    s = swap_probability_by_distance(table, fit, n, jax.random.fold_in(key, n))
    x = s['centres']
    ax.fill_between(x, s['model_lower'], s['model_upper'], alpha=0.3, color='C0',
                    label='BNS P(swap to item), 90%')
    ax.plot(x, s['model_mean'], 'C0-o', ms=3)
    ax.plot(x, s['predicted_nearest'], 'C1--', label='BNS: nearest non-target')
    ax.errorbar(x, s['empirical'], yerr=s['empirical_se'], fmt='ks', ms=4,
                label='data: nearest non-target')
    ax.set_title(f'set size {n}')
    ax.set_xlabel('|cue distance| (rad)')
    ax.set_ylim(bottom=0)
  axes[0, 0].set_ylabel('probability per non-target')
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
