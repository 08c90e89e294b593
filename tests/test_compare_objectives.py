"""The objectives comparison script end to end, tiny."""

import csv
import os

import ml_collections

from rnn_behaviour import comparison
from rnn_behaviour.analysis import run_analysis
from tests import conftest


def test_compare_objectives_then_mechanisms(tmp_path):
  tiny = conftest.make_tiny_config()
  overrides = {section: tiny[section].to_dict()
               for section in ('task', 'model', 'diffusion', 'train', 'eval')}
  overrides['analysis'] = dict(num_bins=4, samples_per_display=4, num_bootstrap=4,
                               num_shuffles=2, num_fixed_point_starts=4)
  spec = ml_collections.ConfigDict(dict(
      base='default', seeds=[0],
      objectives={'moment_matching': ('moment_matching', 'full'),
                  'diffusion_flat': ('diffusion', 'flat')},
      overrides=overrides))
  rows = comparison.compare(spec, str(tmp_path))
  assert sorted(r['objective'] for r in rows) == ['diffusion_flat', 'moment_matching']
  with open(tmp_path / 'comparison.csv') as f:
    table = list(csv.DictReader(f))
  assert list(table[0]) == list(comparison.COLUMNS)
  assert all(float(r['distance_ratio']) > 0 for r in table)
  assert os.path.getsize(tmp_path / 'comparison.png') > 1000
  assert '| moment_matching | 1 |' in (tmp_path / 'comparison.md').read_text()
  assert 'bns_logit_error' in (tmp_path / 'comparison.md').read_text()
  assert 'the generating behavioural model scores' in (tmp_path / 'comparison.md').read_text()
  assert os.path.getsize(tmp_path / 'swap_functions.png') > 1000
  with open(tmp_path / 'swap_functions.csv') as f:
    fitted_to = {r['fitted_to'] for r in csv.DictReader(f)}
  assert fitted_to == {'network', 'surrogate', 'exact'}    # A parametric target.
  # A finished run is not repeated: a second call reads the same summaries back.
  assert comparison.compare(spec, str(tmp_path)) == rows
  # The mechanisms table over the same runs.
  mechanisms = run_analysis.analyse_comparison(str(tmp_path))
  assert sorted(r['objective'] for r in mechanisms) == ['diffusion_flat', 'moment_matching']
  with open(tmp_path / 'mechanisms.csv') as f:
    assert list(next(csv.DictReader(f))) == list(run_analysis.MECHANISM_COLUMNS)
  assert (tmp_path / 'mechanisms.md').read_text().count('\n') == 4
  with open(tmp_path / 'mechanisms_details.csv') as f:
    details = list(csv.DictReader(f))
  assert [d['objective'] for d in details] == ['diffusion_flat', 'moment_matching']
  assert all(d['aligns_at_cue'] in ('True', 'False') for d in details)
  assert os.path.getsize(tmp_path / 'mechanisms.png') > 1000
