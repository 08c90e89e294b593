"""The paper's mechanism experiment at the paper's scale, for an accelerator:
16 dendritic units, 32 displays x 512 samples, the paper's stage lengths, three seeds.

  python experiments/paper_mechanisms.py --workdir=DIR --config=experiments/configs/paper_mechanisms_paper.py
"""

import importlib.util
import os


def get_config():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'paper_mechanisms_cpu.py')
  spec = importlib.util.spec_from_file_location('paper_mechanisms_cpu', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config('paper')
  config.overrides.analysis.samples_per_display = 32
  config.overrides.analysis.pair_rotations = 24
  config.overrides.analysis.report_values = 24
  config.noise_sweep_ensemble = 3
  return config
