"""The paper's scale (Radmard, Bays & Lengyel): 16 dendritic units, 32 displays x 512 samples.

For GPU/TPU. Overrides only what differs from the default.
"""

from rnn_behaviour.configs import default


def get_config():
  config = default.get_config()
  config.model.cell = 'dendritic'
  config.model.num_units = 16
  config.model.num_branches = 10
  config.model.num_subbranches = 10
  config.model.trial_noise = -1.0            # sqrt(btilde_T) on every unit, as in the paper.
  config.diffusion.onset = 'regularise'      # The paper regularises the onset readout.
  config.train.num_steps = 20000
  config.train.displays_per_batch = 32
  config.train.samples_per_display = 512
  config.train.learning_rate = 1e-3
  config.train.warmup_steps = 500
  config.train.displays_per_chunk = 8
  config.train.log_every = 100
  config.train.checkpoint_every = 1000
  config.eval.num_displays = 1024
  config.eval.samples_per_display = 1024
  return config
