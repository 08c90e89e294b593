"""The paper's probe-cued curriculum (METHOD sec. 9) as one run of experiments/curriculum.py.

  python experiments/curriculum.py --config=experiments/configs/curriculum_probe.py --workdir=DIR
  ... --config=experiments/configs/curriculum_probe.py:paper    (the paper's scale)

'cpu' (default): the default 64-unit rate cell, continuous cue features, the paper's preparatory
noise sqrt(btilde_T), three seeds as one ensemble, stage lengths that fit a 2-core CPU.
'paper': 16 dendritic units, 32 x 512 a step, Adam 1e-3, the onset regularised as the paper did.
"""

import ml_collections

from rnn_behaviour.configs import paper_targets

CPU_STEPS = dict(task_optimal_short=300, task_optimal=300, no_swaps=1000, flat=1000,
                 smooth=1500, moment_matching=1000)
PAPER_STEPS = dict(task_optimal_short=5000, task_optimal=5000, no_swaps=20000, flat=20000,
                   smooth=20000, moment_matching=20000)


def common_overrides(scale: str) -> dict:
  task = dict(cue_grid=0)
  if scale == 'paper':
    return dict(
        task=task,
        model=dict(cell='dendritic', num_units=16, num_branches=10, num_subbranches=10,
                   trial_noise=-1.0),
        diffusion=dict(onset='regularise'),
        train=dict(displays_per_batch=32, samples_per_display=512, learning_rate=1e-3,
                   warmup_steps=500, displays_per_chunk=8, ensemble_size=3,
                   checkpoint_every=1000))
  if scale != 'cpu':
    raise ValueError(f"scale must be 'cpu' or 'paper', got {scale!r}")
  return dict(task=task, model=dict(trial_noise=-1.0),
              train=dict(ensemble_size=3, warmup_steps=100, checkpoint_every=500, log_every=100))


def get_config(scale: str = 'cpu'):
  config = ml_collections.ConfigDict()
  config.base = 'default'
  config.overrides = common_overrides(scale)
  config.stages = paper_targets.probe_chain(PAPER_STEPS if scale == 'paper' else CPU_STEPS)
  return config
