"""The paper's index-cued curriculum (the Panichello & Buschman task; METHOD sec. 9).

  python experiments/curriculum.py --config=experiments/configs/curriculum_index.py --workdir=DIR

Diffusion on no swaps -> task-optimal -> swap rate 0.05 -> 0.10, at the scale named after the
colon ('cpu', the default, or 'paper'), with the sizes of curriculum_probe.py.
"""

import importlib.util
import os

import ml_collections

from rnn_behaviour.configs import paper_targets

CPU_STEPS = {'no_swaps': 1000, 'task_optimal': 300, 'swap_0.05': 1000, 'swap_0.10': 1000}
PAPER_STEPS = {'no_swaps': 20000, 'task_optimal': 5000, 'swap_0.05': 20000, 'swap_0.10': 20000}


def _probe_module():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'curriculum_probe.py')
  spec = importlib.util.spec_from_file_location('curriculum_probe', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(scale: str = 'cpu'):
  config = ml_collections.ConfigDict()
  config.base = 'default'
  config.overrides = _probe_module().common_overrides(scale)
  config.stages = paper_targets.index_chain(PAPER_STEPS if scale == 'paper' else CPU_STEPS)
  return config
