"""Benchmarks of the behavioural fits on Bays et al. (2009); prints one JSON line per figure.

  python experiments/benchmark_behaviour.py [--data=../shared/data/bays2009/bays_data.mat]
      [--check_optimum]   # also compare every EM cell with a multi-start L-BFGS search (slow)

Figures: mixture fit time for all 48 subject x set size cells (both models, compiled), the EM
log-likelihood shortfall against the reference search, BNS SVI fit time on all 7271 trials
(cold: including compilation; warm: a second fit), 5-fold cross-validation of BNS on all
trials (every fold fitted at once, vmapped SVI; wall and CPU seconds: CPU time is steadier on a
shared machine), and the posterior-predictive sampler's responses per second (set size 2,
8-location displays).
"""

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from rnn_behaviour import task
from rnn_behaviour.behaviour import bns, bns_cv, bns_files, data, mixture, surrogate


def emit(**kw):
  print(json.dumps(kw), flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data', default=os.path.join(os.path.dirname(__file__), '..', '..',
                                                     'shared', 'data', 'bays2009',
                                                     'bays_data.mat'))
  parser.add_argument('--check_optimum', action='store_true')
  parser.add_argument('--svi_steps', type=int, default=2000)
  parser.add_argument('--cv_steps', type=int, default=300)
  args = parser.parse_args()
  table = data.load_bays2009(args.data)
  cells, d = mixture.cell_data(table)

  for three in (True, False):
    jax.block_until_ready(mixture.fit_em(d, three=three))   # Compile.
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    out = [mixture.fit_em(d, three=three) for three in (True, False)]
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
  emit(figure='mixture_fit_seconds_48_cells_both_models', value=float(np.median(times)),
       cells=len(cells), starts={'three': 12, 'two': 9})
  if args.check_optimum:
    for three, fitted in zip((True, False), out):
      ll = np.asarray(fitted['loglik'])
      ref = np.array([mixture.reference_fit(d, c, three, num_starts=10) for c in range(len(cells))])
      emit(figure='mixture_em_shortfall_vs_multistart', model='three' if three else 'two',
           max_shortfall=float((ref - ll).max()), mean_shortfall=float((ref - ll).mean()))

  for label, spec in (('pooled', bns.BNSSpec()), ('subject_effects',
                                                   bns.BNSSpec(subject_effects=True))):
    t0 = time.perf_counter()
    fit = bns.fit(jax.random.PRNGKey(0), table, spec, num_steps=args.svi_steps)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = bns.fit(jax.random.PRNGKey(1), table, spec, num_steps=args.svi_steps)
    warm = time.perf_counter() - t0
    emit(figure='bns_svi_fit_seconds', variant=label, trials=len(table),
         steps=args.svi_steps, cold=cold, warm=warm)

  folds = bns_cv.make_folds(jax.random.PRNGKey(7), len(table), 5)
  for label, spec in (('pooled', bns.BNSSpec()), ('subject_effects',
                                                   bns.BNSSpec(subject_effects=True))):
    seconds = []
    for _ in ('cold', 'warm'):
      t0, c0 = time.perf_counter(), time.process_time()
      cv = bns_cv.cross_validate_folds(jax.random.PRNGKey(11), table, spec, folds,
                                    num_steps=args.cv_steps)
      seconds.append((time.perf_counter() - t0, time.process_time() - c0))
    emit(figure='bns_cv_seconds', variant=label, folds=5, steps=args.cv_steps,
         trials=len(table), cold=seconds[0][0], warm=seconds[1][0], cold_cpu=seconds[0][1],
         warm_cpu=seconds[1][1], heldout_lpd=float(np.nansum(cv.lpd)))

  with tempfile.TemporaryDirectory() as tmp:
    bns_files.save(fit, os.path.join(tmp, surrogate.FIT_SUBDIR))
    model = surrogate.load_response_model(tmp, 2)
  sample = jax.jit(model.sample_responses, static_argnums=2)
  for k, s in ((1000, 1000), (10000, 100)):
    displays = task.sample_displays(jax.random.PRNGKey(2), k, 2, cue_grid=8)
    jax.block_until_ready(sample(jax.random.PRNGKey(3), displays, s))
    t0 = time.perf_counter()
    reps = 5
    for r in range(reps):
      jax.block_until_ready(sample(jax.random.PRNGKey(4 + r), displays, s))
    rate = reps * k * s / (time.perf_counter() - t0)
    emit(figure='sampler_responses_per_second', displays=k, samples_per_display=s,
         value=float(rate))


if __name__ == '__main__':
  main()
