"""The paper's mechanism experiment sized for a 2-core CPU (experiments/paper_mechanisms.py).

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


PROBE_STEPS = dict(task_optimal_short=200, task_optimal=200, no_swaps=800, flat=800, smooth=1200,
                   moment_matching=800)
INDEX_STEPS = {'no_swaps': 800, 'task_optimal': 200, 'swap_0.05': 800, 'swap_0.10': 800}


def get_config(scale: str = 'cpu'):
  probe, index = _load('curriculum_probe'), _load('curriculum_index')
  config = ml_collections.ConfigDict()
  config.chains = ml_collections.ConfigDict()
  config.chains.probe = probe.get_config(scale)
  config.chains.index = index.get_config(scale)
  if scale == 'cpu':
    config.chains.probe.stages = probe.paper_targets.probe_chain(PROBE_STEPS)
    config.chains.index.stages = index.paper_targets.index_chain(INDEX_STEPS)
  # (cueing, target as reported, the stage whose network it is)
  config.targets = (
      ('probe', 'smooth', 'smooth'),
      ('probe', 'flat', 'flat'),
      ('probe', 'no_swaps', 'no_swaps'),
      ('probe', 'task_optimal', 'task_optimal'),
      ('probe', 'moment_matching', 'moment_matching'),
      ('index', 'swap_0.10', 'swap_0.10'),
      ('index', 'no_swaps', 'no_swaps'),
  )
  # Applied to every stage of every chain: the analysis sizes.
  config.overrides = ml_collections.ConfigDict(dict(analysis=dict(
      samples_per_display=16, pair_rotations=2, report_values=12, reported_bins=16,
      swap_displays=64, num_shuffles=5, num_bootstrap=1000)))
  # Beyond the paper: the probe chain at these preparatory noise levels (the main chains use
  # sqrt(btilde_T)), one seed each, its smooth-swap and no-swap stages analysed.
  config.noise_sweep = (0.0, 0.05, 0.2)
  config.noise_sweep_stage = ('smooth', 'no_swaps')   # Analysed: the smooth swaps, a control.
  config.noise_sweep_ensemble = 1
  # Shorter stages for the sweep's chains (the main chain's lengths at the paper's scale).
  config.noise_sweep_steps = (ml_collections.ConfigDict(dict(
      task_optimal_short=100, task_optimal=100, no_swaps=400, flat=400, smooth=800))
                              if scale == 'cpu' else ml_collections.ConfigDict())
  return config
