"""The objectives comparison script end to end, tiny."""

import csv
import json
import os

import ml_collections
import numpy as np
import pytest

from rnn_behaviour import comparison
from rnn_behaviour.analysis import run_analysis
from tests import conftest


# Both tests below train and evaluate several tiny runs end to end (1.5-2 min each on 2 cores):
# slow. Fast tests of their parts: test_cloud_paths' comparison tables, member export, finished
# and layout detection; test_ensemble's members equal standalone runs; test_train's evaluation.
@pytest.mark.slow
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


def _spec(ensembles: bool) -> ml_collections.ConfigDict:
  tiny = conftest.make_tiny_config()
  overrides = {section: tiny[section].to_dict()
               for section in ('task', 'model', 'diffusion', 'train', 'eval')}
  overrides['eval']['bns_svi_steps'] = 0      # Not what this test is about; it is slow.
  return ml_collections.ConfigDict(dict(
      base='default', seeds=[3, 4], ensembles=ensembles,
      objectives={'diffusion': ('diffusion', 'full')}, overrides=overrides))


def _csv(path) -> list[dict]:
  with open(path) as f:
    return list(csv.DictReader(f))


def _lines(path) -> int:
  with open(path) as f:
    return len(f.readlines())


@pytest.mark.slow
def test_one_ensemble_per_objective_gives_the_per_seed_numbers(tmp_path):
  """Seeds 3 and 4 trained as one ensemble give the rows of two standalone runs.

  Tolerance: member i computes the standalone run's arithmetic, vmapped, so only float32
  rounding of reordered reductions differs (tests/test_ensemble.py); after the tiny run's 4
  steps the columns differ by at most ~3e-7 relative. rtol 1e-4 allows that to grow, while a
  response classed as another item (a swap rate moving by 1/16 here) would still fail.
  """
  per_seed, ensemble = str(tmp_path / 'per_seed'), str(tmp_path / 'ensemble')
  comparison.compare(_spec(False), per_seed)
  comparison.compare(_spec(True), ensemble)
  with open(os.path.join(ensemble, 'diffusion', 'config.json')) as f:
    assert json.load(f)['train']['ensemble_size'] == 2
  assert not os.path.exists(os.path.join(per_seed, 'diffusion', 'config.json'))
  with open(os.path.join(ensemble, 'diffusion', 'seed_4', comparison.MEMBER_FILE)) as f:
    assert json.load(f)['member'] == 1
  expected, got = _csv(os.path.join(per_seed, 'comparison.csv')), _csv(
      os.path.join(ensemble, 'comparison.csv'))
  assert [(r['objective'], r['seed']) for r in got] == [('diffusion', '3'), ('diffusion', '4')]
  assert [(r['objective'], r['seed']) for r in expected] == [(r['objective'], r['seed'])
                                                               for r in got]
  for a, b in zip(got, expected):
    for column in comparison.COLUMNS[2:]:
      np.testing.assert_allclose(float(a[column]), float(b[column]), rtol=1e-4, atol=1e-6,
                                 err_msg=f"{column}, seed {a['seed']}")
  stages = {d: _lines(os.path.join(d, comparison.TIMINGS_FILE)) for d in (per_seed, ensemble)}
  assert stages == {per_seed: 4, ensemble: 5}   # Train + evaluate x 2; train, 2 x (export + eval).
  # Nothing is retrained or re-evaluated on a second call, whichever way the switch is set: a
  # folder keeps the layout it was trained in.
  for directory in (per_seed, ensemble):
    for ensembles in (True, False):
      comparison.compare(_spec(ensembles), directory)
      assert _lines(os.path.join(directory, comparison.TIMINGS_FILE)) == stages[directory]
  assert _csv(os.path.join(ensemble, 'comparison.csv')) == got
