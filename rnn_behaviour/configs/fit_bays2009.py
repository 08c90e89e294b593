"""Fit the behavioural models to Bays, Catalao & Husain (2009): `--mode=fit_behaviour`.

  python -m rnn_behaviour.main --mode=fit_behaviour --workdir=/tmp/bays \
      --config=rnn_behaviour/configs/fit_bays2009.py \
      --config.data.path=../shared/data/bays2009/bays_data.mat

The data file is public (osf.io/c2yx5, `bays_data.mat`); the path is tried as given (relative
to the current directory) and then relative to the repository root. Selections are explicit
lists, empty meaning all, e.g. `--config.data.set_sizes='[2,4]'`.
"""

import ml_collections

from rnn_behaviour.configs import default


def data_block(path='../shared/data/bays2009/bays_data.mat', fmt='bays2009'):
  return ml_collections.ConfigDict(dict(
      path=path,
      format=fmt,                    # 'bays2009' | 'csv'.
      angle_unit='radians',          # CSV only: 'radians' ([-pi,pi) or [0,2pi)) | 'degrees'.
      subjects=[],                   # Explicit selections; empty: all.
      set_sizes=[],
      conditions=[],
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
  ))


def get_config():
  config = default.get_config()
  config.data = data_block()
  config.fit = fit_block()
  return config
