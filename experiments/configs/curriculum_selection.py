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

CPU_STEPS = dict(select_short=1500, diffusion_short=1500, no_swaps=2000, smooth=3000)
CPU_STEPS_INDEX = dict(select_short=1500, diffusion_short=1500, no_swaps=2000,
                       **{'flat_0.05': 1500, 'flat_0.10': 1500})


def with_criteria(stages, binned=()) -> tuple:
  """Each stage ends when learned; the stages in `binned` also check the swap rate by cue
  distance."""
  return tuple(dict(stage, criterion=dict(bin_tolerance=0.05) if stage['name'] in binned else {})
               for stage in stages)


def get_config(cueing: str = 'probe'):
  config = ml_collections.ConfigDict()
  config.base = 'default'
  config.overrides = dict(
      task=dict(cue_grid=0), model=dict(trial_noise=-1.0),
      train=dict(ensemble_size=3, warmup_steps=100, checkpoint_every=250, log_every=100))
  config.criteria = dict(check_every=250, min_steps=250, num_displays=64, samples_per_display=64,
                         tolerance=0.05, members=2 / 3)
  config.continue_unlearned = False
  if cueing == 'probe':
    config.stages = with_criteria(
        paper_targets.selection_chain(CPU_STEPS, 'probe', ('smooth',)), binned=('smooth',))
  elif cueing == 'index':
    config.stages = with_criteria(paper_targets.selection_chain(CPU_STEPS_INDEX, 'index',
                                                                ('flat_0.05', 'flat_0.10')))
  else:
    raise ValueError(f"cueing must be 'probe' or 'index', got {cueing!r}")
  return config
