"""Posterior-predictive checks of a BNS fit and the behaviour fit's figures.

The check of the cue-similarity effect (`nontarget_proximity_check`): per set size and cue
distance, the share of responses within NEAR_NONTARGET rad of a non-target and more than
FAR_FROM_TARGET rad from the target, data against the model's predictive band. The figures:
that check, response-error histograms with each model's predictive density, and the swap
probability against cue distance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import files
from rnn_behaviour.behaviour import bns as bns_lib
from rnn_behaviour.behaviour import data as data_lib
from rnn_behaviour.behaviour import mixture
from rnn_behaviour.behaviour import surrogate

PPC_COLUMNS = ('set_size', 'cue_distance', 'n_nontargets', 'n', 'data_rate', 'data_se',
               'model_mean', 'model_lower', 'model_upper', 'ppp', 'warning')


NEAR_NONTARGET, FAR_FROM_TARGET = 0.4, 0.8


def nontarget_proximity(table: data_lib.TrialTable, responses, near: float = NEAR_NONTARGET,
                        far: float = FAR_FROM_TARGET) -> np.ndarray:
  """Per non-target: is the response within `near` rad of it and more than `far` from the target?

  Args:
    table: T trials.
    responses: (..., T) responses (the data's, or posterior-predictive replicates).

  Returns:
    (..., T, J) bool over the table's non-target slots (False at padding).
  """
  y = np.asarray(responses, np.float64)
  _, _, nt_report, mask = table.nontargets()
  to_target = np.abs(circular.wrap(y - table.target_report()))                 # (..., T)
  to_item = np.abs(circular.wrap(y[..., None] - nt_report))                     # (..., T, J)
  return (to_item < near) & (to_target > far)[..., None] & mask


def nontarget_proximity_check(key, table: data_lib.TrialTable, fit: bns_lib.BNSFit,
                              num_draws: int = 200, band: float = 0.9,
                              min_count: int = 30) -> list[dict]:
  """Posterior-predictive check of the cue-similarity effect, rows of `PPC_COLUMNS`.

  The statistic, per set size and |cue distance| of a non-target to the target (exact values
  when few, else 8 bins): the share of non-targets whose response lies within 0.4 rad of them
  and more than 0.8 rad from the target (`nontarget_proximity`). It is computed on the data
  and on `num_draws` replicate data sets (`bns.predictive_responses`: same displays, subjects
  and set sizes, one posterior draw per replicate); the model's mean and central `band` over
  replicates, and `ppp` = P(replicate >= data) (near 0 or 1: the model misses the data).
  `warning` says when the data fall outside the band or the bin has fewer than `min_count`
  non-targets.
  """
  rows = []
  sizes = [n for n in table.set_sizes() if n > 1]
  lo_q, hi_q = (1 - band) / 2, 1 - (1 - band) / 2
  for i, n in enumerate(sizes):
    sub = table.select(set_sizes=[n])
    dc, _, _, mask = sub.nontargets()
    bins, centres = distance_bins(np.abs(dc[mask]))
    count = np.bincount(bins, minlength=len(centres))
    data_hits = nontarget_proximity(sub, sub.response)[mask]
    data_rate = np.bincount(bins, weights=data_hits, minlength=len(centres)) / count
    reps = bns_lib.predictive_responses(jax.random.fold_in(key, i), fit, sub, num_draws)
    hits = nontarget_proximity(sub, reps)[:, mask]                              # (R, M)
    model = np.stack([np.bincount(bins, weights=h, minlength=len(centres)) for h in hits]
                     ) / count                                                   # (R, B)
    lower, upper = np.quantile(model, lo_q, 0), np.quantile(model, hi_q, 0)
    for b, centre in enumerate(centres):
      notes = []
      if not lower[b] <= data_rate[b] <= upper[b]:
        notes.append(f'data outside the model\'s {band:.0%} band')
      if count[b] < min_count:
        notes.append(f'only {count[b]} non-targets (< {min_count})')
      rows.append(dict(set_size=n, cue_distance=float(centre), n_nontargets=int(count[b]),
                       n=len(sub), data_rate=float(data_rate[b]),
                       data_se=float(np.sqrt(data_rate[b] * (1 - data_rate[b]) / count[b])),
                       model_mean=float(model[:, b].mean()), model_lower=float(lower[b]),
                       model_upper=float(upper[b]),
                       ppp=float(np.mean(model[:, b] >= data_rate[b])),
                       warning='; '.join(notes)))
  return rows


def plot_nontarget_proximity(rows: list[dict], path: str) -> str:
  """The check of `nontarget_proximity_check`: data (with binomial SE) over the model's band."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  sizes = sorted({r['set_size'] for r in rows})
  fig, axes = plt.subplots(1, max(len(sizes), 1), figsize=(3.4 * max(len(sizes), 1), 3.0),
                           squeeze=False, sharey=True)
  for ax, n in zip(axes[0], sizes):
    rs = [r for r in rows if r['set_size'] == n]
    x = np.array([r['cue_distance'] for r in rs])
    ax.fill_between(x, [r['model_lower'] for r in rs], [r['model_upper'] for r in rs],
                    color='C0', alpha=0.3, label='BNS predictive, 90%')
    ax.plot(x, [r['model_mean'] for r in rs], 'C0-')
    ax.errorbar(x, [r['data_rate'] for r in rs], yerr=[r['data_se'] for r in rs], fmt='ks',
                ms=4, label='data (± SE)')
    ax.set_title(f'set size {n}')
    ax.set_xlabel('|cue distance| (rad)')
    ax.set_ylim(bottom=0)
  axes[0, 0].set_ylabel(f'P(response < {NEAR_NONTARGET} rad from non-target,\n'
                        f'> {FAR_FROM_TARGET} rad from target)')
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  files.save_figure(fig, path)
  plt.close(fig)
  return path


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def error_density_table(table: data_lib.TrialTable, grid: np.ndarray) -> data_lib.TrialTable:
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
    expanded = error_density_table(sub.take(pick), grid)
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
  files.save_figure(fig, path)
  plt.close(fig)
  return path


def distance_bins(distance: np.ndarray, max_unique: int = 12, num_bins: int = 8):
  """Bin index of each |cue distance| and the bin centres: exact values when they are few.

  Few distinct values (a grid of locations; values within `circular.EDGE_TOLERANCE` of each
  other are one value, `circular.distinct_values`, so angles saved to 6 decimals still give
  one bin per grid distance): one bin per value. Otherwise `num_bins` equal bins over [0, pi]
  by `circular.bin_index`. Bins holding no distance are dropped, so that no rate downstream
  divides by an empty count.

  Returns:
    bins: (M,) int bin of each distance, in [0, B).
    centres: (B,) radians, each bin's value (grid) or centre (equal bins).
  """
  values, index = circular.distinct_values(distance)
  if len(values) <= max_unique:
    return index, values
  edges = np.linspace(0, np.pi, num_bins + 1)
  bins = np.asarray(circular.bin_index(distance, edges))
  used, bins = np.unique(bins, return_inverse=True)
  return bins.reshape(np.shape(distance)), ((edges[1:] + edges[:-1]) / 2)[used]


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
  bins, centres = distance_bins(np.abs(dc[mask]))
  # Nearest item to the response (`circular.nearest_item`, the target winning ties): slot 0 the
  # target, slot 1 + j non-target j.
  items = np.concatenate([sub.target_report()[:, None], np.where(mask, nt_report, 0.0)], 1)
  exists = np.concatenate([np.ones((len(sub), 1), bool), mask], 1)

  def nearest_rate(resp):
    nearest = np.asarray(circular.nearest_item(resp, items[:, None, :], preferred=0,
                                               mask=exists[:, None, :]))          # (T, R)
    return (nearest[:, None, :] == 1 + np.arange(mask.shape[1])[None, :, None]).mean(-1)
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
  files.save_figure(fig, path)
  plt.close(fig)
  return path
