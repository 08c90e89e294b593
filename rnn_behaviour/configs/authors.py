"""The authors' training (Radmard, Bays & Lengyel's public code), as a preset over paper.py.

Their code (github puria-radmard/behaviour_ddpm: `ddpm/train/multiepoch.py`, the model classes
under `ddpm/model/`, one yaml a stage under `ddpm/configs/dendritic_hvae/`) differs from our
defaults in the options `apply_authors_options` switches on; each is also a config field of its
own, so any one can be set alone:

  config.task.cue_input='conjunctive'           the cue coded code(c_k) (x) 1 (probe cueing) ...
  config.model.input_projection='factorised'    ... and sent, like the stimulus, through the
  config.model.feature_projection_size=6          per-feature projections 16 -> 6 x 16 -> 6,
                                                  then 36 -> the leaves (probe cueing)
  config.model.soma='softplus'                  the dendritic unit's output F >= 0
  config.model.time_levels='all'                the time signal at every level of the tree
  config.model.initial_state='half_normal'      x_0 = |N(0, I)| sqrt(1 - abar_T)
  config.diffusion.response_noise='all'         sqrt(btilde_t) on every unit, teacher forcing too
  config.diffusion.onset='regularise'           no reset of the onset readout; instead
  config.diffusion.onset_penalty='mean_norm'      0.001 x mean ||mean over samples of D x_onset||
  config.diffusion.onset_weight=0.001
  config.objective.denoise_scale=0.5/alpha**2   their kernel target: 50 ||m - mu||^2 at a = 0.1
  config.objective.state_penalty='mean_norm'    1e-5 x (mean ||x|| of each trial epoch +
  config.objective.state_weight=1e-5              mean ||(I - D^T D) x|| of the response)
  config.train: constant Adam 1e-3, no warm-up, no clipping, Adam state carried from init_from.

Not switched on here: the objective (their first stages are `objective.name='free_running'`,
their `train_as_rnn`; the later ones 'diffusion'), the stage's shape (delay, T, beta), the trial
noise (paper.py's sqrt(btilde_T); the default config's is 0) and the batch size: those belong to
the curriculum stage. The dendritic-cell options are set only on a dendritic cell, the input
options only under probe cueing (their index-cued model keeps a separate cue channel).
"""

from rnn_behaviour.configs import paper

# The authors' optimiser, in the train block's fields (train.py reads them).
_TRAIN = dict(schedule='constant', learning_rate=1e-3, warmup_steps=0, grad_clip=0.0,
              init_optimizer=True)


def apply_authors_options(config):
  """Switches on every option of the authors' training in `config` (in place) and returns it.

  Works on any config (a CPU-sized default run included); the cell's and the cueing's options
  follow the config's cell and cueing as they stand, so set those first.
  """
  if config.task.cueing == 'probe':
    config.task.cue_input = 'conjunctive'
    config.model.input_projection = 'factorised'
    config.model.feature_projection_size = 6
  if config.model.cell == 'dendritic':
    config.model.soma = 'softplus'
    config.model.time_levels = 'all'
  config.model.initial_state = 'half_normal'
  config.diffusion.response_noise = 'all'
  config.diffusion.onset = 'regularise'
  config.diffusion.onset_penalty = 'mean_norm'
  config.diffusion.onset_weight = 0.001
  config.objective.denoise_scale = 0.5 * (1.0 / float(config.model.alpha))**2
  config.objective.state_penalty = 'mean_norm'
  config.objective.state_weight = 1e-5
  for field, value in _TRAIN.items():
    if field in config.train:  # schedule and init_optimizer: the train block's, issue 20.
      config.train[field] = value
  return config


def get_config():
  """paper.py's sizes (16 dendritic units, 32 displays x 512 samples) with every authors'
  option on."""
  return apply_authors_options(paper.get_config())
