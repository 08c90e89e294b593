"""Which paths keep cue selection at the paper's preparatory noise: an ablation for a CPU.

  python experiments/curriculum.py --config=experiments/configs/selection_ablation.py:variants \
      --workdir=DIR
  ... :paths                              (the gradual shape and the authors' free-running path)

Every run is one seed (member 0 of the three-seed chain of curriculum_selection.py when it starts
from that chain's `diffusion_short` stage: link DIR/select_short and DIR/diffusion_short to that
chain's stages to reuse them) and ends when learned: the full-shape diffusion stage on no swaps
(delay 15, T = 40, beta 0.01-0.30, noise sqrt(btilde_T) = 0.55), its held-out swap rate within
0.05 of the target's, checked every 250 steps, within a budget.

'variants': from the network that selects in the short shape (diffusion_short), the full-shape
  stage with our defaults, and with each of the authors' differences that keep the network's
  shapes alone (loss scale and penalties with the onset regularised; reverse noise on every
  unit; the half-normal initial state; constant Adam 1e-3 without clipping), then all together.
  (The cue through the stimulus's projection changes the input weights' shape, and the
  dendritic cell's options need the dendritic cell: neither can start from this network.)
'paths': the short-to-full step taken gradually (delay 8, T = 20 in between), and the authors'
  path: free-running (their train_as_rnn, no onset reset) in the short shape from scratch, then
  free-running at full length, then diffusion at full length.
'dendritic': the paper's 16-unit dendritic cell through the path's two short-shape stages, from
  scratch, one seed.
"""

import ml_collections

from rnn_behaviour.configs import paper_targets

BUDGET = 1500
SHORT = paper_targets.SHORT_SHAPE
# One seed; `member` of the three-seed source, or -1 when the source is itself one seed.
single = lambda member: dict(train=dict(ensemble_size=1, init_member=member))
MID_SHAPE = dict(task=dict(epochs=dict(delay=8)), diffusion=dict(num_steps=20))

AUTHORS_LOSS = dict(
    diffusion=dict(onset='regularise', onset_penalty='mean_norm', onset_weight=0.001),
    objective=dict(denoise_scale=50.0, state_penalty='mean_norm', state_weight=1e-5))
NOISE_ALL = dict(diffusion=dict(response_noise='all'))
HALF_NORMAL = dict(model=dict(initial_state='half_normal'))
# The authors' free-running stages leave the onset readout alone, with their small penalty.
NO_RESET = dict(diffusion=dict(onset='regularise', onset_penalty='mean_norm', onset_weight=0.001))
CONSTANT_ADAM = dict(train=dict(schedule='constant', learning_rate=1e-3, warmup_steps=0,
                                grad_clip=0.0))


def merged(*parts) -> dict:
  """Nested dicts merged left to right."""
  out = {}
  for part in parts:
    for section, values in part.items():
      if isinstance(values, dict):
        target = out.setdefault(section, {})
        for key, value in values.items():
          if isinstance(value, dict):
            target.setdefault(key, {}).update(value)
          else:
            target[key] = value
      else:
        out[section] = values
  return out


def stage(name, objective, overrides=None, start_from='', steps=BUDGET, member=0):
  parts = [dict(objective=dict(name=objective), train=dict(num_steps=int(steps)),
                behaviour=paper_targets.target('no_swaps')), single(member), overrides or {}]
  return dict(name=name, start_from=start_from, overrides=merged(*parts), criterion={})


def get_config(part: str = 'variants'):
  config = ml_collections.ConfigDict()
  config.base = 'default'
  config.overrides = dict(
      task=dict(cue_grid=0), model=dict(trial_noise=-1.0),
      train=dict(ensemble_size=3, warmup_steps=100, checkpoint_every=250, log_every=100))
  config.criteria = dict(check_every=250, min_steps=250, num_displays=64, samples_per_display=64,
                         tolerance=0.05, members=2 / 3)
  config.continue_unlearned = True     # An ablation: every row is run, learned or not.
  # The selection chain's first two stages (three seeds), reused from its workdir.
  chain = paper_targets.selection_chain(
      dict(select_short=1500, diffusion_short=1500, no_swaps=2000), 'probe', ())
  base = [dict(s, criterion={}) for s in chain[:2]]
  if part == 'variants':
    variants = [
        stage('full_ours', 'diffusion', {}, 'diffusion_short'),
        stage('full_authors_loss', 'diffusion', AUTHORS_LOSS, 'diffusion_short'),
        stage('full_noise_all', 'diffusion', NOISE_ALL, 'diffusion_short'),
        stage('full_half_normal', 'diffusion', HALF_NORMAL, 'diffusion_short'),
        stage('full_constant_adam', 'diffusion', CONSTANT_ADAM, 'diffusion_short'),
        stage('full_all', 'diffusion',
              merged(AUTHORS_LOSS, NOISE_ALL, HALF_NORMAL, CONSTANT_ADAM), 'diffusion_short'),
    ]
  elif part == 'paths':
    variants = [
        stage('mid_shape', 'diffusion', MID_SHAPE, 'diffusion_short'),
        stage('full_after_mid', 'diffusion', {}, 'mid_shape', member=-1),
        stage('fr_short', 'free_running', merged(SHORT, NO_RESET), 'scratch', member=-1),
        stage('fr_full', 'free_running', NO_RESET, 'fr_short', member=-1),
        stage('diffusion_after_fr', 'diffusion', {}, 'fr_full', member=-1),
    ]
  elif part == 'all_seeds':
    # Every shape-keeping difference together, from members 1 and 2 of the same source (member
    # 0 is in 'variants').
    variants = [stage(f'full_all_member{m}', 'diffusion',
                      merged(AUTHORS_LOSS, NOISE_ALL, HALF_NORMAL, CONSTANT_ADAM),
                      'diffusion_short', member=m) for m in (1, 2)]
  elif part == 'dendritic':
    # The paper's cell (16 units, 10 x 10 softplus branches), one seed, the path's first two
    # stages from scratch: does it learn selection in the short shape at CPU budgets?
    base = []
    cell = dict(model=dict(cell='dendritic', num_units=16, num_branches=10, num_subbranches=10))
    variants = [
        stage('dendritic_select_short', 'task_optimal', merged(SHORT, cell), 'scratch',
              steps=1000, member=-1),
        stage('dendritic_diffusion_short', 'diffusion', merged(SHORT, cell),
              'dendritic_select_short', steps=1000, member=-1),
    ]
  else:
    raise ValueError(f"part must be 'variants', 'paths', 'all_seeds' or 'dendritic', got "
                     f'{part!r}')
  config.stages = tuple(base + variants)
  return config
