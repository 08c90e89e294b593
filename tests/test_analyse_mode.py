"""`--mode=analyse` end to end on a tiny trained network (a copy of the session's trained run
or ensemble; the tiny config's analysis sizes: 4 bins, 4 samples a display)."""

import csv
import json
import os

import pytest

from rnn_behaviour import modes
from tests import conftest


@pytest.mark.slow   # ~40 s. Fast twin: tests/test_analysis.py::test_report_on_a_toy_network
# (the design-grid analyses and figures on a toy network).
def test_analyse_mode_writes_numbers_and_figures(tiny_config, trained_run, tmp_path):
  tiny_config.analysis.protocol = 'design_grid'
  assert (tiny_config.analysis.num_bins, tiny_config.analysis.samples_per_display) == (4, 4)
  workdir = conftest.copy_run(trained_run, tmp_path / 'run')
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


def _tiny_paper_analysis(config):
  config.analysis.pair_rotations = 1
  config.analysis.report_values = 6
  config.analysis.reported_bins = 6
  config.analysis.samples_per_display = 4
  config.analysis.swap_displays = 16
  config.analysis.num_bootstrap = 20
  config.analysis.num_shuffles = 2


@pytest.mark.slow   # ~50 s. Fast twin: tests/test_paper_protocol.py::test_authors_variant_on_an_
# untrained_tiny_network (run_paper's whole path on one network).
def test_paper_protocol_mode_per_member(tiny_config, trained_ensemble, tmp_path):
  _tiny_paper_analysis(tiny_config)
  # Today's variant by name (post-cue step kept, 4 distances); the authors' default is tested
  # end to end in test_paper_protocol.py.
  tiny_config.analysis.paper_variant = 'ours'
  tiny_config.train.ensemble_size = 2      # The session's trained ensemble (seeds 0 and 1).
  workdir = conftest.copy_run(trained_ensemble, tmp_path / 'run')
  modes.run(tiny_config, workdir, 'analyse')
  window = (tiny_config.task.epochs.delay + tiny_config.task.epochs.cue
            + tiny_config.task.epochs.post_cue + tiny_config.diffusion.num_steps)
  for member in (0, 1):
    folder = os.path.join(workdir, 'analysis_paper', f'member_{member}')
    with open(os.path.join(folder, 'summary.json')) as f:
      numbers = json.load(f)
    assert numbers['seed'] == tiny_config.seed + member
    assert set(numbers) >= {'swap_rate', 'sigmoid_mse', 'flat_mse', 'alignment_precue',
                            'alignment_postcue', 'precue_distance_slope', 'response_swap_auc'}
    assert 0.0 <= numbers['swap_rate'] <= 1.0
    # Four cue distances on the 8-location grid, one rotation each.
    assert numbers['settings']['num_pairs'] == 4
    with open(os.path.join(folder, 'alignment.csv')) as f:
      rows = list(csv.DictReader(f))
    assert len(rows) == window
    assert rows[0]['epoch'] == 'delay' and rows[-1]['epoch'] == 'response'
    for name in ('alignment', 'precue_vs_distance', 'swap_decision'):
      assert os.path.getsize(os.path.join(folder, f'{name}.png')) > 1000
