"""Fit the behavioural models to Bays, Catalao & Husain (2009): `--mode=fit_behaviour`.

  python -m rnn_behaviour.main --mode=fit_behaviour --workdir=/tmp/bays \
      --config=rnn_behaviour/configs/fit_bays2009.py \
      --config.data.path=../shared/data/bays2009/bays_data.mat

The data file is public (osf.io/c2yx5, `bays_data.mat`); the path is tried as given (relative
to the current directory) and then relative to the repository root. Selections are explicit,
empty meaning all, and can be given as comma-separated values on the command line:

  --config.data.set_sizes=2,4 --config.data.subjects=3,12

(`'[2,4]'` and `'(2,4)'` work too; in Python a list or a tuple.) They are
tuples, not lists, because ml_collections cannot override list fields from flags.

Outputs are cached in <workdir>/behaviour keyed on the data file's bytes and the resolved data
and fit blocks: rerunning with anything changed refits (and logs why), unchanged returns the
saved results.
"""

import ml_collections

from rnn_behaviour.configs import default


def data_block(path='../shared/data/bays2009/bays_data.mat', fmt='bays2009'):
  return ml_collections.ConfigDict(dict(
      path=path,
      format=fmt,                    # 'bays2009' | 'csv'.
      angle_unit='radians',          # CSV only: 'radians' ([-pi,pi) or [0,2pi)) | 'degrees'.
      subjects=(),                   # Explicit selections; empty: all. Tuples (settable from
      set_sizes=(),                  # flags as --config.data.set_sizes=2,4); a comma-
      conditions=(),                 # separated string is accepted too.
      delay_as_condition=False,      # Bays 2009: sample-array duration as the condition.
  ))


def fit_block():
  return ml_collections.ConfigDict(dict(
      seed=0,
      mixture_models=['two_component', 'three_component'],
      # BNS (METHOD sec. 2).
      bns_dimension='cue',           # 'cue' | 'report' | 'torus'.
      num_fourier=6,                 # Fourier terms per circle (M).
      symmetric=True,                # f(d) = f(-d): cosine terms only.
      emission='von_mises',          # 'von_mises' | 'wrapped_stable'.
      shared_across_set_sizes=False,
      subject_effects=True,          # Guess logit and emission per subject (swap f shared):
                                     # 3-fold CV on Bays 2009: lpd -5510 vs -5639 without.
      inference='svi',               # 'svi' | 'nuts'.
      guide='mvn',                   # SVI guide: 'mvn' (full-rank normal) | 'normal'.
      svi_steps=2000,
      svi_learning_rate=0.02,
      nuts_warmup=500,
      num_posterior_samples=500,
      # Model comparison: k-fold held-out lpd (0: skip).
      cv_folds=5,
      cv_svi_steps=1500,
      compare_dimensions=['cue', 'report', 'torus'],
      compare_emissions=['von_mises'],
      # Trust and robustness.
      min_cell_trials=30,            # Cells (subject x set size x condition) with fewer trials
                                     # are fitted but flagged in the log and the CSVs' warning
                                     # column: at n = 30 (kappa 8, pT 0.8) kappa's standard
                                     # error is ~28% of kappa.
      svi_max_restarts=2,            # A diverged SVI fit (NaN or exploding ELBO) restarts from
      svi_restart_lr_factor=0.3,     # a new init at this times the step size, this many times;
                                     # a CV fold that still diverges is skipped with a warning.
      progress_seconds=5.0,          # At most one progress line per this many seconds.
      ppc_draws=200,                 # Posterior-predictive checks: posterior draws.
      plots=True,                    # False: CSVs only (batch jobs, tests).
  ))


def get_config():
  config = default.get_config()
  config.data = data_block()
  config.fit = fit_block()
  return config
