"""The report's judgements: held-out split, models on held-out real trials, plain conclusions.

Everything here is a small function of arrays or of the numbers the stages wrote, so that the
page and its tests can be built from fixtures. Angles are radians; a swap is a response nearest
a non-target (the cued item wins ties), as everywhere in the package.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import circular
from rnn_behaviour import evaluate
from rnn_behaviour import task as task_lib


def split_trials(cells, fraction: float, seed: int) -> np.ndarray:
  """(T,) bool, True for the held-out trials: `fraction` of every cell, drawn with `seed`.

  Args:
    cells: (T,) a cell label per trial (e.g. from `data.cell_labels`): subject x set size x
      condition, so that every cell keeps trials to fit and to judge on.
    fraction: in [0, 1); each cell holds out round(fraction n) of its n trials, but at most
      n - 1, so that every cell is still fitted.
    seed: the draw's seed (the split is a pure function of the labels and the seed).
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f'config.report.heldout_fraction must be in [0, 1), got {fraction!r}')
  cells = np.asarray(cells)
  rng = np.random.default_rng(seed)
  heldout = np.zeros(cells.shape[0], bool)
  for cell in np.unique(cells):
    rows = np.flatnonzero(cells == cell)
    count = min(int(round(fraction * rows.size)), rows.size - 1)
    heldout[rng.permutation(rows)[:count]] = True
  return heldout


def swap_rate(responses, displays: task_lib.Displays) -> float:
  """Share of responses (K, S) nearest a non-target, over all K x S."""
  frequencies = evaluate.item_frequencies(jnp.asarray(responses), displays)
  mask = task_lib.nontarget_mask(displays)
  return float(jnp.mean(jnp.sum(jnp.where(mask, frequencies, 0.0), axis=1)))


def binned_swap_rates(responses, displays: task_lib.Displays, edges) -> tuple[list, list]:
  """Swap rate per cue-distance bin of responses (K, S): (rates (B,), pairs (B,))."""
  frequencies = evaluate.item_frequencies(jnp.asarray(responses), displays)
  rates, pairs = evaluate.swap_rate_by_cue_distance(frequencies, displays, edges)
  return rates.tolist(), pairs.tolist()


def judge_samples(samples: dict, displays: task_lib.Displays, observed, edges,
                  kappa: float) -> dict:
  """Each model's samples against the real responses on the same held-out displays.

  Args:
    samples: {name: (K, S) responses} on the K held-out displays (networks, baseline, BNS).
    displays: the held-out trials' displays.
    observed: (K,) the subjects' responses.
    edges: cue-distance bin edges (rad).
    kappa: the von Mises kernel's concentration for the held-out log-likelihood.

  Returns:
    {'data': {swap_rate, swap_rate_by_distance, pairs}, name: {swap_rate,
    swap_rate_by_distance, heldout_loglik (nats a trial), circular_sd}} .
  """
  observed = jnp.asarray(observed, jnp.float32)
  target = displays.cued_report()
  rates, pairs = binned_swap_rates(observed[:, None], displays, edges)
  result = {'data': dict(swap_rate=swap_rate(observed[:, None], displays),
                         swap_rate_by_distance=rates, pairs=pairs,
                         num_trials=int(displays.num_displays),
                         circular_sd=_circular_sd(observed - target))}
  for name, responses in samples.items():
    responses = jnp.asarray(responses)
    rates, _ = binned_swap_rates(responses, displays, edges)
    result[name] = dict(
        swap_rate=swap_rate(responses, displays), swap_rate_by_distance=rates,
        heldout_loglik=evaluate.kde_log_likelihood(responses, observed, kappa),
        circular_sd=_circular_sd(responses - target[:, None]))
  return result


def _circular_sd(errors) -> float:
  return float(circular.circular_sd(jnp.ravel(circular.wrap(errors))))


def draw_responses(sample_fn, displays: task_lib.Displays, key, num_samples: int):
  """(K, S) responses of `sample_fn(displays, key, num_samples)` as a host array."""
  return np.asarray(sample_fn(displays, key, num_samples))


def learned_cue_selection(network_rate: float, target_rate: float, tolerance: float) -> bool:
  """A network has learned cue selection when its held-out swap rate is within `tolerance` of
  its target's (the BNS posterior predictive on the same displays); NaN is not learned."""
  return bool(math.isfinite(network_rate) and math.isfinite(target_rate)
              and abs(network_rate - target_rate) <= tolerance)


def _share(flags: Sequence[bool]) -> str:
  return f'{sum(flags)} of {len(flags)}'


def mechanism_conclusion(set_size: int, members: Sequence[dict], tolerance: float) -> dict:
  """The plain sentences on one set size's mechanism analyses, and whether to trust them.

  Args:
    set_size: the networks' set size.
    members: one dict a member: `learned` (bool) and, when analysed, the paper analysis's
      numbers (`run_paper` summary: sigmoid_mse, flat_mse, alignment_precue,
      alignment_postcue, prediction {slope, slope_interval}, swap_decided_from,
      response_swap_auc, precue_swap_auc); `analysed` False where the protocol does not apply.
    tolerance: the swap-rate tolerance that defined `learned`.

  Returns:
    dict: trustworthy (bool), gate (the sentence on which members count), sentences (list of
    plain statements, empty when nothing is interpreted), interpreted (member indices).
  """
  n = len(members)
  if not members or not all(m.get('analysed', True) for m in members):
    return dict(trustworthy=False, interpreted=[], sentences=[],
                gate=f'Set size {set_size}: the paper\'s protocol needs two-item displays, so '
                     'these networks are judged on behaviour only; no mechanism is claimed.')
  failed = [i for i, m in enumerate(members) if not m['learned']]
  kept = [i for i in range(n) if i not in failed]
  criterion = (f'(a network counts when its held-out swap rate is within {tolerance:g} of the '
               'BNS posterior predictive\'s on the same trials)')
  if not kept:
    return dict(trustworthy=False, interpreted=[], sentences=[],
                gate=f'{n} of {n} networks did not learn cue selection: not interpreted '
                     f'{criterion}.')
  if failed:
    gate = (f'{len(failed)} of {n} networks did not learn cue selection: not interpreted '
            f'{criterion}; the statements below rest on the other {len(kept)}.')
  else:
    gate = f'All {n} networks learned cue selection {criterion}.'
  chosen = [members[i] for i in kept]

  def finite(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)

  sigmoid = [finite(m.get('sigmoid_mse')) and finite(m.get('flat_mse'))
             and m['sigmoid_mse'] < m['flat_mse']
             and finite(m.get('alignment_postcue')) and finite(m.get('alignment_precue'))
             and m['alignment_postcue'] > m['alignment_precue'] for m in chosen]
  precue = [np.mean([m['alignment_precue'] for m in chosen if finite(m.get('alignment_precue'))])
            if any(finite(m.get('alignment_precue')) for m in chosen) else float('nan')]
  postcue = [np.mean([m['alignment_postcue'] for m in chosen
                      if finite(m.get('alignment_postcue'))])
             if any(finite(m.get('alignment_postcue')) for m in chosen) else float('nan')]
  prediction = [finite((m.get('prediction') or {}).get('slope_interval', [None, None])[1])
                and m['prediction']['slope_interval'][1] < 0 for m in chosen]
  decided = [m.get('swap_decided_from') for m in chosen]
  precue_decided = [d is not None and str(d).split('+')[0] == 'delay' for d in decided]
  k = len(chosen)
  sentences = [
      f'Plane alignment: the cued-item colour planes turn from less to more aligned at the cue '
      f'(a step fits better than a flat line) in {_share(sigmoid)} networks; mean |cos| '
      f'{precue[0]:.2f} before the cue and {postcue[0]:.2f} before the response.',
      f'The pre-cue prediction (nearer cue locations, more aligned planes before the cue, a '
      f'slope whose 95% interval lies below zero) holds in {_share(prediction)} networks.',
      f'When a swap is decided: swap and correct trials separate from the delay, before the cue, '
      f'in {_share(precue_decided)} networks; '
      + ', '.join(f'member {i}: {"never" if d is None else "from " + str(d)}'
                  for i, d in zip(kept, decided)) + '.']
  agree = all(len(set(flags)) == 1 for flags in (sigmoid, prediction, precue_decided))
  trustworthy = k >= 2 and agree
  if k < 2:
    sentences.append('Only one network counts, so nothing can be said about its spread: '
                     'treat these as anecdotes.')
  elif not agree:
    sentences.append(f'The {k} networks disagree on at least one of these, so none of them is '
                     'a finding of this data set yet: train more members or longer.')
  else:
    sentences.append(f'The {k} networks agree on all three statements.')
  return dict(trustworthy=trustworthy, interpreted=kept, sentences=sentences, gate=gate)


def network_conclusion(set_size: int, judged: dict, members: Sequence[str],
                       baseline: str | None, tolerance: float) -> str:
  """One plain sentence on how the set size's networks reproduce the held-out trials."""
  data = judged['data']
  rates = [judged[m]['swap_rate'] for m in members]
  lls = [judged[m]['heldout_loglik'] for m in members]
  bns = judged['bns']
  learned = [learned_cue_selection(r, bns['swap_rate'], tolerance) for r in rates]
  text = (f'Set size {set_size} ({data["num_trials"]} held-out trials, data swap rate '
          f'{data["swap_rate"]:.3f}): the BNS posterior predictive gives {bns["swap_rate"]:.3f}, '
          f'the {len(members)} diffusion networks {min(rates):.3f} to {max(rates):.3f} '
          f'({_share(learned)} within {tolerance:g} of the BNS). Held-out log-likelihood (nats '
          f'a trial, von Mises kernel): networks {np.mean(lls):.3f} (range {min(lls):.3f} to '
          f'{max(lls):.3f}), BNS {bns["heldout_loglik"]:.3f}')
  if baseline and baseline in judged:
    b = judged[baseline]
    text += f', moment-matching baseline {b["heldout_loglik"]:.3f} (swap rate {b["swap_rate"]:.3f})'
  return text + '.'


def sample_key(seed: int, *path: int):
  """A key folded from `seed` along `path` (set size, model index, ...)."""
  key = jax.random.key(seed)
  for p in path:
    key = jax.random.fold_in(key, p)
  return key
