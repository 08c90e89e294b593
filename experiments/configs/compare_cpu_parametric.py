"""The CPU-sized objectives comparison on a target whose swaps depend strongly on cue distance.

On Bays et al. (2009) set size 2 (compare_cpu.py) the fitted swap function is nearly flat, so a
flat-rate target cannot be told apart from the full behaviour there. This variant keeps every
budget of compare_cpu.py and swaps the target for the default config's parametric behaviour:
swap logit -d^2 / (2 * 1.5) - 1 of the cue distance d, a swap rate falling from about 0.25 for
neighbouring locations to 0.05 for opposite ones. It trains the four objectives whose
responses can hold swaps at all (task-optimal and behaviour-MSE networks report one point per
display, whatever the target; compare_cpu.py measures them) to keep within the CPU hour.

  python experiments/compare_objectives.py --workdir=DIR \
      --config=experiments/configs/compare_cpu_parametric.py
"""

import importlib.util
import os


def get_config():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'compare_cpu.py')
  spec = importlib.util.spec_from_file_location('compare_cpu', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.base = 'default'
  keep = ('diffusion', 'diffusion_flat', 'diffusion_no_swaps', 'moment_matching')
  config.objectives = {name: config.objectives[name] for name in keep}
  return config
