"""The objectives comparison sized for a 2-core CPU (about an hour for 6 objectives x 3 seeds).

3,000 steps a run is a third of what the default config trains for: CPU-sized diffusion networks
are still undertrained at this budget (max swap-curve error about 0.1 on a parametric target),
so read this variant as a smoke test of the claim and use compare_paper.py for the claim itself.

Target behaviour: BNS fitted to Bays et al. (2009), set size 2, on the 8-location grid.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.base = 'bays2009_pipeline'     # A config module under rnn_behaviour/configs.
  config.seeds = (0, 1, 2)
  # Each objective's seeds train as one seed ensemble (one vmapped step for all of them; seeds
  # must then be consecutive); False: one run per seed (see rnn_behaviour/comparison.py).
  config.ensembles = True
  # name -> (objective, training signature)
  config.objectives = ml_collections.ConfigDict({
      'diffusion': ('diffusion', 'full'),
      'task_optimal': ('task_optimal', 'full'),
      'behaviour_mse': ('behaviour_mse', 'full'),
      'moment_matching': ('moment_matching', 'full'),
      'diffusion_no_swaps': ('diffusion', 'no_swaps'),
      'diffusion_flat': ('diffusion', 'flat'),
  })
  # Overrides applied to every run (same budget for all objectives).
  config.overrides = ml_collections.ConfigDict({
      'train': {'num_steps': 3000, 'checkpoint_every': 1000},
      # Trial-epoch noise makes the pre-response state vary from trial to trial, without which
      # a swap cannot be set up before the response (mechanisms.py would read AUC 0.5).
      'model': {'trial_noise': 0.05},
      'eval': {'num_displays': 128, 'samples_per_display': 128},
  })
  return config
