"""The paper's parametric target behaviours and curricula (METHOD sec. 9), as config pieces.

Targets (overrides of the `behaviour` block): no swaps; a constant swap rate (0.05, 0.10); and
the smooth cue-dependent swap function, swap logit -d^2 / (2 * 1.5) of the cue distance d
against a target logit raised by 2 (our parametrisation pins the target's logit at 0, so the
swap logit is -d^2 / 3 - 2). The paper states no guess component for these targets, so the
guess logit is -10 (a guess rate of 5e-5); report noise keeps the default concentration.

Chains (tuples of curriculum stages, `rnn_behaviour/curriculum.py`):
  probe-cued: task-optimal with a short delay -> task-optimal at full length -> diffusion on no
    swaps -> flat swap rate 0.10 -> smooth swaps; a moment-matching network on the smooth swaps
    branches off the flat stage (the paper's point: matching a few moments is not enough);
  index-cued (Panichello & Buschman's task): diffusion on no swaps -> task-optimal -> swap
    rate 0.05 -> 0.10.
Stage lengths are arguments, so the same chains serve a CPU run and the paper's scale.
"""

from rnn_behaviour.behaviour import parametric

GUESS_LOGIT = -10.0
SHORT_DELAY = 5


def target(name: str, num_items: int = 2) -> dict:
  """Overrides of config.behaviour for a named target: 'no_swaps', 'smooth', 'flat_0.05',
  'flat_0.10' (any 'flat_<rate>')."""
  common = dict(source='parametric', signature='full', guess_logit=GUESS_LOGIT)
  if name == 'no_swaps':
    return dict(common, swap_kind='none')
  if name == 'smooth':
    return dict(common, swap_kind='gaussian', swap_width=1.5, swap_bias=-2.0)
  if name.startswith('flat_'):
    rate = float(name[len('flat_'):])
    return dict(common, swap_kind='flat',
                swap_bias=parametric.flat_bias_for_rate(rate, num_items, GUESS_LOGIT))
  raise ValueError(f'unknown paper target {name!r}')


def _stage(name, objective, target_name=None, steps=1000, start_from='', delay=None, **extra):
  overrides = dict(objective=dict(name=objective), train=dict(num_steps=int(steps)))
  if target_name:
    overrides['behaviour'] = target(target_name)
  if delay is not None:
    overrides['task'] = dict(epochs=dict(delay=int(delay)))
  for section, values in extra.items():
    overrides.setdefault(section, {}).update(values)
  return dict(name=name, start_from=start_from, overrides=overrides)


def probe_chain(steps: dict, full_delay: int = 15) -> tuple:
  """The probe-cued curriculum; steps: {stage name: training steps}."""
  return (
      _stage('task_optimal_short', 'task_optimal', 'no_swaps', steps['task_optimal_short'],
             delay=SHORT_DELAY),
      _stage('task_optimal', 'task_optimal', 'no_swaps', steps['task_optimal'], delay=full_delay),
      _stage('no_swaps', 'diffusion', 'no_swaps', steps['no_swaps'], delay=full_delay),
      _stage('flat', 'diffusion', 'flat_0.10', steps['flat'], delay=full_delay),
      _stage('smooth', 'diffusion', 'smooth', steps['smooth'], delay=full_delay),
      _stage('moment_matching', 'moment_matching', 'smooth', steps['moment_matching'],
             start_from='flat', delay=full_delay),
  )


def index_chain(steps: dict) -> tuple:
  """The index-cued (Panichello & Buschman) curriculum; steps: {stage name: steps}."""
  index = dict(task=dict(cueing='index'))
  return (
      _stage('no_swaps', 'diffusion', 'no_swaps', steps['no_swaps'], **index),
      _stage('task_optimal', 'task_optimal', 'no_swaps', steps['task_optimal'], **index),
      _stage('swap_0.05', 'diffusion', 'flat_0.05', steps['swap_0.05'], **index),
      _stage('swap_0.10', 'diffusion', 'flat_0.10', steps['swap_0.10'], **index),
  )


# The short shape of the authors' first probe-cued stage (a_probe_cued_rnn_no_swap_short.yaml):
# delay 1 and a 5-step response with beta fixed at 0.15, so the preparatory noise
# sqrt(btilde_T) is 0.36 rather than the full shape's 0.55.
SHORT_SHAPE = dict(task=dict(epochs=dict(delay=1)),
                   diffusion=dict(num_steps=5, beta_min=0.15, beta_max=0.15))


def in_short_shape(more: dict) -> dict:
  """Nested overrides `more` (sections of dicts) in SHORT_SHAPE: the shape's epochs and
  diffusion fields, `more`'s other fields."""
  merged = {k: dict(v) for k, v in SHORT_SHAPE.items()}
  for section, values in more.items():
    merged.setdefault(section, {}).update(values)
  merged['task']['epochs'] = dict(SHORT_SHAPE['task']['epochs'])
  return merged


def selection_chain(steps: dict, cueing: str = 'probe', final_targets=('smooth',)) -> tuple:
  """The path that keeps cue selection under the paper's noise (issue 20's measurements):
  selection learned task-optimally in the short shape -> diffusion on no swaps in the short
  shape -> diffusion on no swaps in the full shape -> each of `final_targets` in turn (each
  started from the one before). steps: {stage name: training steps (the maximum, when the
  curriculum has criteria)}."""
  extra = dict(task=dict(cueing=cueing)) if cueing != 'probe' else {}
  short = in_short_shape(extra)
  stages = [
      _stage('select_short', 'task_optimal', 'no_swaps', steps['select_short'], **short),
      _stage('diffusion_short', 'diffusion', 'no_swaps', steps['diffusion_short'], **short),
      _stage('no_swaps', 'diffusion', 'no_swaps', steps['no_swaps'], **extra),
  ]
  for name in final_targets:
    stages.append(_stage(name, 'diffusion', name, steps[name], **extra))
  return tuple(stages)
