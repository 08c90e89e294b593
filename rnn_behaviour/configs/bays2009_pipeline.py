"""The whole pipeline from the Bays et al. (2009) file: `--mode=all`.

Fit the behavioural models (BNS over cue distance, all set sizes), write
`<workdir>/behaviour/`, then train the RNN on set-size-2 surrogate displays drawn from the BNS
posterior predictive on the experiment's 8-location grid, and evaluate the network against that
posterior predictive.

  python -m rnn_behaviour.main --mode=all --workdir=/tmp/bays_all \
      --config=rnn_behaviour/configs/bays2009_pipeline.py \
      --config.data.path=../shared/data/bays2009/bays_data.mat

Fitting is kept short for a CPU: fewer SVI steps, 3-fold CV of the main BNS variant and the
mixtures only (about a minute in all).
"""

from rnn_behaviour.configs import fit_bays2009


def get_config():
  config = fit_bays2009.get_config()
  config.behaviour.source = 'bns'
  config.behaviour.fit = ''          # '': <workdir>/behaviour of this run, fitted first.
  config.task.num_items = 2
  config.task.cue_grid = 8           # Bays 2009: 8 locations, pi/4 apart.
  config.task.min_separation_cue = 3.141592653589793 / 4
  config.fit.svi_steps = 1500
  config.fit.cv_svi_steps = 1000
  config.fit.cv_folds = 3
  config.fit.compare_dimensions = []
  config.fit.num_posterior_samples = 400
  return config
