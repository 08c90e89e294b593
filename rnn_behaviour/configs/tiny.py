"""Tiny config: the default run shrunk until it trains and evaluates in seconds.

For tests, notebooks' smoke runs and trying a command out: 8 units, 8 task steps and 6 diffusion
steps, 4 training steps of 4 displays x 4 samples, an analysis grid of 4 bins. The paper's trial
noise and small dendritic branch sizes are set so that every noise path runs.

  python -m rnn_behaviour.main --config=rnn_behaviour/configs/tiny.py --workdir=DIR
"""

import ml_collections

from rnn_behaviour.configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.task.epochs.stimulus = 2
  config.task.epochs.delay = 3
  config.task.epochs.cue = 2
  config.task.epochs.post_cue = 1
  config.task.num_tuning = 8
  config.model.num_units = 8
  config.model.trial_noise = -1.0    # The paper's trial noise, so every noise path runs.
  config.model.num_branches = 2
  config.model.num_subbranches = 3
  config.diffusion.num_steps = 6
  config.train.num_steps = 4
  config.train.displays_per_batch = 4
  config.train.samples_per_display = 4
  config.train.warmup_steps = 1
  config.train.log_every = 1
  config.train.checkpoint_every = 2
  config.eval.num_displays = 8
  config.eval.samples_per_display = 16
  config.eval.num_plot_displays = 2
  config.eval.bns_svi_steps = 100
  # --mode=analyse (design grid; the paper protocol shares the sampling sizes).
  config.analysis.num_bins = 4
  config.analysis.samples_per_display = 4
  config.analysis.num_bootstrap = 4
  config.analysis.num_shuffles = 2
  config.analysis.num_fixed_point_starts = 4
  return config
