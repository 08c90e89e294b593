"""The paper's mechanism experiment sized for a 2-core CPU (experiments/paper_mechanisms.py).

The chains are curriculum_selection.py's (stages that end when learned); the findings are read
only from the networks that learned (paper_mechanisms.md says how many did).

Size, and why: the default 64-unit rate cell with 64 displays x 16 samples a step. The paper's
16 dendritic units (1,600 softplus leaves each) take 0.64 s a step at only 8 x 128 on this CPU
(README benchmark), 14 times the rate cell's 0.047 s at 64 x 16, so a whole curriculum of them
cannot learn in two hours here. Three seeds train as one ensemble; the paper's preparatory
noise sqrt(btilde_T) is on every unit; cue features are continuous, so the analysis can ask
about nine cue distances (45 to 165 degrees). The onset stays 'reset' (the readout set to a
prior draw at response onset): at CPU budgets it is what gave the verified swap curve, and it
leaves the memory to the null space, which is where the protocol looks.
"""

import importlib.util
import os

import ml_collections

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(scale: str = 'cpu'):
  """The chains of curriculum_selection.py (the path that keeps cue selection at the paper's
  noise: short-shape selection -> short-shape diffusion -> full shape -> the swap target), each
  stage ending when learned; the networks analysed are each chain's last stages."""
  selection = _load('curriculum_selection')
  suffix = '' if scale == 'cpu' else f',{scale}'
  config = ml_collections.ConfigDict()
  config.chains = ml_collections.ConfigDict()
  config.chains.probe = selection.get_config('probe' + suffix)
  config.chains.index = selection.get_config('index' + suffix)
  # (cueing, target as reported, the stage whose network it is)
  config.targets = (
      ('probe', 'smooth', 'smooth'),
      ('probe', 'no_swaps', 'no_swaps'),
      ('probe', 'task_optimal (short shape)', 'select_short'),
      ('index', 'swap_0.10', 'flat_0.10'),
      ('index', 'swap_0.05', 'flat_0.05'),
      ('index', 'no_swaps', 'no_swaps'),
  )
  # Applied to every stage of every chain: the analysis sizes (the authors' protocol on fewer
  # rotations, report values and samples than theirs, to fit a 2-core CPU).
  config.overrides = ml_collections.ConfigDict(dict(analysis=dict(
      samples_per_display=16, pair_rotations=2, report_values=12, reported_bins=16,
      swap_displays=64, num_shuffles=5, num_bootstrap=1000)))
  # Beyond the paper: the probe chain at these preparatory noise levels (the main chains use
  # sqrt(btilde_T)), one seed each, its smooth-swap and no-swap stages analysed.
  config.noise_sweep = (0.0, 0.2)
  config.noise_sweep_stage = ('smooth', 'no_swaps')
  config.noise_sweep_ensemble = 1
  config.noise_sweep_steps = ml_collections.ConfigDict()
  return config
