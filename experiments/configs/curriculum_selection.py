"""The curriculum that keeps cue selection under the paper's preparatory noise (0.55).

  python experiments/curriculum.py --config=experiments/configs/curriculum_selection.py \
      --workdir=DIR                       (probe cueing, smooth swaps; ':index' for index cueing)

Selection is learned task-optimally in the authors' short shape (delay 1, T = 5, beta 0.15),
then diffusion on no swaps in the short shape, then in the full shape (delay 15, T = 40,
beta 0.01-0.30), then the swap target (probe: the paper's smooth swap function; index: swap
rate 0.05 -> 0.10). Three seeds as one ensemble, the default 64-unit rate cell, continuous cues.

Every stage ends when learned (rnn_behaviour/criteria.py): checked every 250 steps on 64
held-out displays x 64 samples, the overall swap rate within 0.05 of the target's (task-optimal:
at most 0.05 above it; probe-cued swap targets also within 0.05 in each of 4 cue-distance bins),
in at least 2 of the 3 members; the step counts below are each stage's budget.
"""

import ml_collections

from rnn_behaviour.configs import paper_targets

CPU_STEPS = dict(select_short=1500, diffusion_short=1500, no_swaps=3000, smooth=3000)
CPU_STEPS_INDEX = dict(select_short=1500, diffusion_short=1500, no_swaps=3000,
                       **{'flat_0.05': 1500, 'flat_0.10': 1500})


# The short-shape diffusion stage trains its whole budget: stopped at its first check (step
# 250, swap rates 0.065 / 0.050 / 0.150), the full-shape stage from it fell to chance (0.46) and
# won back only 0.147 / 0.351 / 0.318 in 2,000 steps (runs of 2026-12-01, results page).
MIN_STEPS = dict(diffusion_short=1500)


def with_criteria(stages, binned=()) -> tuple:
  """Each stage ends when learned; the stages in `binned` also check the swap rate by cue
  distance; those in MIN_STEPS train at least that long."""
  def criterion(name):
    found = dict(bin_tolerance=0.05) if name in binned else {}
    if name in MIN_STEPS:
      found['min_steps'] = MIN_STEPS[name]
    return found
  return tuple(dict(stage, criterion=criterion(stage['name'])) for stage in stages)


PAPER_STEPS = dict(select_short=20000, diffusion_short=20000, no_swaps=40000, smooth=40000,
                   **{'flat_0.05': 40000, 'flat_0.10': 40000})


def common_overrides(scale: str) -> dict:
  """'cpu': the default 64-unit rate cell, 64 x 16 a step; 'paper': 16 dendritic units,
  32 x 512 a step, Adam 1e-3, the onset regularised (as curriculum_probe.py's paper scale)."""
  if scale == 'paper':
    return dict(
        task=dict(cue_grid=0),
        model=dict(cell='dendritic', num_units=16, num_branches=10, num_subbranches=10,
                   trial_noise=-1.0),
        diffusion=dict(onset='regularise'),
        train=dict(ensemble_size=3, displays_per_batch=32, samples_per_display=512,
                   learning_rate=1e-3, warmup_steps=500, displays_per_chunk=8,
                   checkpoint_every=1000, log_every=100))
  if scale != 'cpu':
    raise ValueError(f"scale must be 'cpu' or 'paper', got {scale!r}")
  return dict(task=dict(cue_grid=0), model=dict(trial_noise=-1.0),
              train=dict(ensemble_size=3, warmup_steps=100, checkpoint_every=250, log_every=100))


def get_config(arg: str = 'probe'):
  """arg: 'probe' or 'index', optionally ',paper' for the paper's scale ('probe,paper')."""
  cueing, _, scale = arg.partition(',')
  scale = scale or 'cpu'
  config = ml_collections.ConfigDict()
  config.base = 'default'
  config.overrides = common_overrides(scale)
  config.criteria = dict(check_every=250 if scale == 'cpu' else 1000, min_steps=250,
                         num_displays=64, samples_per_display=64, tolerance=0.05, members=2 / 3)
  config.continue_unlearned = False
  steps = CPU_STEPS if cueing == 'probe' else CPU_STEPS_INDEX
  if scale == 'paper':
    steps = PAPER_STEPS
  if cueing == 'probe':
    config.stages = with_criteria(
        paper_targets.selection_chain(steps, 'probe', ('smooth',)), binned=('smooth',))
  elif cueing == 'index':
    config.stages = with_criteria(paper_targets.selection_chain(steps, 'index',
                                                                ('flat_0.05', 'flat_0.10')))
  else:
    raise ValueError(f"cueing must be 'probe' or 'index', got {cueing!r}")
  return config
