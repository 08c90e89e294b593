"""`--mode=analyse` end to end on a tiny trained network."""

import json
import os

from rnn_behaviour import modes


def test_analyse_mode_writes_numbers_and_figures(tiny_config, tmp_path):
  tiny_config.analysis.num_bins = 4
  tiny_config.analysis.samples_per_display = 4
  tiny_config.analysis.num_bootstrap = 4
  tiny_config.analysis.num_shuffles = 2
  tiny_config.analysis.num_fixed_point_starts = 4
  workdir = str(tmp_path / 'run')
  modes.run(tiny_config, workdir, 'train')
  modes.run(tiny_config, workdir, 'analyse')
  folder = os.path.join(workdir, 'analysis')
  with open(os.path.join(folder, 'analysis.json')) as f:
    numbers = json.load(f)
  total_steps = sum(tiny_config.task.epochs.values()) + tiny_config.diffusion.num_steps
  assert len(numbers['alignment']['cosine']) == total_steps
  assert set(numbers['summary']) == {'alignment_sigmoid_mse', 'alignment_flat_mse',
                                     'swap_auc_precue', 'swap_auc_postcue'}
  assert numbers['fixed_points']['num_points'] >= 0
  for name in ('alignment', 'swap_auc', 'cross_temporal', 'pca', 'fixed_points'):
    assert os.path.getsize(os.path.join(folder, f'{name}.png')) > 1000
