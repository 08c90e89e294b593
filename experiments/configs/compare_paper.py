"""The objectives comparison at the paper's scale, for accelerators."""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "compare_cpu", os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare_cpu.py"))
compare_cpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_cpu)


def get_config():
  config = compare_cpu.get_config()
  config.base = 'paper'
  config.seeds = (0, 1, 2, 3, 4)
  config.overrides = {'train': {'num_steps': 20000}}
  return config
