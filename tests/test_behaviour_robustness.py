"""Issue 12 for the behavioural half: nothing lost, nothing silent.

Stale caches, messy CSV files, degenerate fits, selections from flags, diverged SVI, the
posterior-predictive check. Most tests call the pieces; one end-to-end test runs
`fit_behaviour` with tiny settings through the documented flags.
"""

import csv
import json
import logging as py_logging
import os

from absl import flags
import jax
import numpy as np
import pytest
from ml_collections import config_flags

from rnn_behaviour.behaviour import bns, checks, data, fit_config, mixture, pipeline, progress
from rnn_behaviour.behaviour import bns_cv, bns_files, simulate, svi
from rnn_behaviour.configs import fit_csv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIT_CSV = os.path.join(REPO, 'rnn_behaviour', 'configs', 'fit_csv.py')
BAYS = os.path.join(REPO, '..', 'shared', 'data', 'bays2009', 'bays_data.mat')
LINES = ['subject,set_size,cued,response,cue_1,cue_2,report_1,report_2',
         's1,2,1,0.1,0.2,1.5,-0.4,2.0', 's2,1,1,0.3,0.2,,0.5,']


# --- 2. Messy CSV files ---------------------------------------------------------------------


def test_csv_with_byte_order_mark_keeps_subjects_apart(tmp_path):
  path = tmp_path / 'bom.csv'
  path.write_bytes(b'\xef\xbb\xbf' + '\n'.join(LINES).encode() + b'\n')
  table = data.load_csv(str(path))
  assert table.subjects() == ['s1', 's2']


@pytest.mark.parametrize('content,line', [
    ('\n'.join(LINES[:2] + ['Jos\xe9,1,1,0.3,0.2,,0.5,']).encode('latin-1'), 3),
    (b'MATLAB 5.0 MAT-file\n\x00\x9c\xff\x00', 2)])
def test_undecodable_csv_names_file_and_line(tmp_path, content, line):
  path = tmp_path / 'odd.csv'
  path.write_bytes(content)
  with pytest.raises(ValueError) as err:
    data.load_csv(str(path))
  assert str(path) in str(err.value) and f'line {line}' in str(err.value), str(err.value)


@pytest.mark.skipif(not os.path.exists(BAYS), reason='Bays 2009 file not present')
def test_mat_file_read_as_csv_suggests_the_format():
  with pytest.raises(ValueError, match='format=bays2009'):
    data.load_csv(BAYS)


def test_directory_as_data_path(tmp_path):
  for loader in (data.load_csv, data.load_bays2009):
    with pytest.raises(ValueError, match='is a directory'):
      loader(str(tmp_path))


# --- 4. Selections from flags ---------------------------------------------------------------


def parse_flags(*overrides):
  """The config `main.py` would build from these command-line overrides."""
  argv = ['prog', f'--config={FIT_CSV}', *overrides]
  values = flags.FlagValues()
  # lock_config as in main.py; sys_argv because overrides are otherwise read from sys.argv.
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  return values.config


@pytest.mark.parametrize('flag,expected', [
    ('--config.data.set_sizes=2,4', [2, 4]), ("--config.data.set_sizes=[2,4]", [2, 4]),
    ('--config.data.set_sizes=4', [4]), ('--config.data.subjects=s01,s02', ['s01', 's02']),
    ('--config.data.subjects=3,12', ['3', '12']), ('--config.data.conditions=a', ['a'])])
def test_selections_settable_from_flags(flag, expected):
  config = parse_flags(flag)
  field = flag.split('=')[0].split('.')[-1]
  assert data.parse_selection(config.data[field], field) == expected


def test_bad_selection_names_the_field():
  config = parse_flags('--config.data.set_sizes=2,x', '--config.data.path=t.csv')
  with pytest.raises(ValueError, match='config.data.set_sizes'):
    fit_config.validate_config(config)


def test_selection_from_flags_loads_those_trials(tmp_path):
  table = simulate.large_experiment(jax.random.PRNGKey(0), num_subjects=3, set_sizes=(1, 2, 4),
                                    trials_per_cell=5)
  path = str(tmp_path / 't.csv')
  data.write_csv(table, path)
  config = parse_flags(f'--config.data.path={path}', '--config.data.set_sizes=2,4',
                       '--config.data.subjects=1,3')
  sub = data.load(config.data)
  assert sub.set_sizes() == [2, 4] and sub.subjects() == ['1', '3'] and len(sub) == 20


# --- 3. Degenerate fits ---------------------------------------------------------------------


def test_zero_learning_rate_is_rejected():
  config = fit_csv.get_config()
  config.fit.svi_learning_rate = 0.0
  with pytest.raises(ValueError, match='config.fit.svi_learning_rate'):
    fit_config.validate_config(config)


def test_more_folds_than_trials_is_rejected(tmp_path):
  path = tmp_path / 'one.csv'
  path.write_text('\n'.join(LINES[:2]) + '\n')
  config = fit_csv.get_config()
  with pytest.raises(ValueError, match='config.fit.cv_folds=5'):
    fit_config.check_data_for_fit(data.load_csv(str(path)), config.fit)


def test_small_cells_are_flagged_in_the_mixture_csv(tmp_path):
  table = simulate.large_experiment(jax.random.PRNGKey(1), num_subjects=2, set_sizes=(2,),
                                    trials_per_cell=40)
  table = table.take(np.r_[np.arange(40), 40])           # Subject 2 keeps one trial.
  fits = [mixture.fit(table, 'three_component')]
  path = str(tmp_path / 'm.csv')
  mixture.write_fits_csv(fits, path, min_trials=30)
  rows = {r['subject']: r for r in csv.DictReader(open(path))}
  # Subject 1 is not small (its warning may still name a weight on a bound, issue 18).
  assert 'unreliable' not in rows['1']['warning'] and rows['1']['n'] == '40'
  assert rows['2']['n'] == '1' and 'only 1 trial' in rows['2']['warning']
  assert 'subject' in pipeline._small_cell_warnings(table, 30)[0]


def test_comparison_rows_score_common_trials_and_never_claim_zero_error():
  ok = dict(fold=0, num_heldout=2, status='ok', attempts=[])
  skipped = dict(fold=1, num_heldout=2, status='skipped', attempts=[])
  results = {'a': dict(lpd=[-1.0, -2.0, -1.5, -1.0], folds=[ok, ok]),
             'b': dict(lpd=[-1.0, -1.0, None, None], folds=[ok, skipped])}
  rows = {r['model']: r for r in pipeline.comparison_rows(results, min_trials=3)}
  assert rows['a']['heldout_lpd'] == -3.0 and rows['a']['n'] == 2
  assert 'fold 2 skipped' in rows['b']['warning'] and 'scored on 2 of 4' in rows['a']['warning']
  one = pipeline.comparison_rows({'a': dict(lpd=[-1.0], folds=[ok])}, min_trials=3)[0]
  assert np.isnan(one['se']) and 'only 1 trial' in one['warning']


# --- 1. Cache keys --------------------------------------------------------------------------


def test_fingerprint_follows_file_contents_and_config(tmp_path):
  path = tmp_path / 't.csv'
  path.write_text('\n'.join(LINES) + '\n')
  config = fit_csv.get_config()
  config.data.path = str(path)
  before = fit_config.input_fingerprint(config, str(path))
  assert fit_config.input_fingerprint(config, str(path))['key'] == before['key']
  path.write_text('\n'.join(LINES[:2]) + '\n')                   # Same name, new contents.
  after = fit_config.input_fingerprint(config, str(path))
  assert after['key'] != before['key'] and after['bns_key'] != before['bns_key']
  assert 'data file' in fit_config.describe_changes(before, after)
  config.fit.cv_folds = 3                                         # CV only: BNS fit stays.
  cv = fit_config.input_fingerprint(config, str(path))
  assert cv['key'] != after['key'] and cv['bns_key'] == after['bns_key']
  assert 'cv_folds 5 -> 3' in fit_config.describe_changes(after, cv)


# --- 5. Diverged SVI ------------------------------------------------------------------------


def test_svi_divergence_criteria():
  steady = 1000.0 + 50.0 * np.exp(-np.arange(500) / 50.0)
  assert svi.svi_divergence(steady, 100) is None
  assert 'non-finite' in svi.svi_divergence(np.r_[steady[:300], [np.nan] * 200], 100)
  exploding = np.r_[steady[:400], np.full(100, 1000.0 + 10 * 100)]
  assert 'exploding' in svi.svi_divergence(exploding, 100)


@pytest.fixture(scope='module')
def small_table():
  return simulate.large_experiment(jax.random.PRNGKey(2), num_subjects=2, set_sizes=(2, 3),
                                   trials_per_cell=15)


@pytest.mark.slow   # Eight SVI fits (~45 s). Fast twins: test_main_fit_restarts_then_reports (the
# same restart rule on the main fit) and tests/test_bns.py's fold read-back test.
def test_diverged_cv_fold_recovers_or_is_skipped(small_table):
  folds = bns_cv.make_folds(jax.random.PRNGKey(0), len(small_table), 2)
  spec = bns.BNSSpec(num_fourier=1)
  # A step size of 1e4 sends the guide to inf/NaN within a few steps; a restart at 1e-6 of it
  # (0.01) converges.
  kw = dict(num_steps=20, learning_rate=1e4, num_samples=10, restart_lr_factor=1e-6,
            guide='normal')
  rec = bns_cv.cross_validate_folds(jax.random.PRNGKey(1), small_table, spec, folds,
                                 max_restarts=1, **kw)
  assert [f['status'] for f in rec.folds] == ['recovered', 'recovered']
  assert np.all(np.isfinite(rec.lpd))
  assert rec.folds[0]['attempts'][0]['diverged'] and rec.folds[0]['attempts'][-1][
      'diverged'] is None
  skip = bns_cv.cross_validate_folds(jax.random.PRNGKey(1), small_table, spec, folds,
                                  max_restarts=0, **kw)
  assert skip.skipped == [0, 1] and np.all(np.isnan(skip.lpd))


def test_main_fit_restarts_then_reports(small_table):
  fit = bns.fit(jax.random.PRNGKey(0), small_table, bns.BNSSpec(num_fourier=1), num_steps=20,
                learning_rate=1e4, num_samples=10, max_restarts=1, restart_lr_factor=1e-6,
                guide='normal')
  attempts = fit.info['svi_attempts']
  assert len(attempts) == 2 and attempts[0]['diverged'] and attempts[1]['diverged'] is None
  assert np.all(np.isfinite(fit.samples['kappa']))
  with pytest.raises(FloatingPointError, match='svi_learning_rate'):
    bns.fit(jax.random.PRNGKey(0), small_table, bns.BNSSpec(num_fourier=1), num_steps=20,
            learning_rate=1e4, num_samples=10, max_restarts=0, guide='normal')


def test_large_experiment_shape():
  table = simulate.large_experiment(jax.random.PRNGKey(0), scale=0.02)
  assert table.set_sizes() == list(range(1, 9)) and len(table.subjects()) == 13
  assert len(table) == 13 * 8 * 4
  params = simulate.subject_parameters(jax.random.PRNGKey(0), 13)
  assert sum(p['swap_bias'] < -5 for p in params) == 3    # Cells with (almost) no swaps.


def test_progress_lines_visible_without_app_run(capsys):
  tick = progress.Throttle(interval=60.0)
  assert tick('first line') and not tick('too soon') and tick('forced', force=True)
  err = capsys.readouterr().err
  assert 'first line' in err and 'forced' in err and 'too soon' not in err


# --- 7. Posterior-predictive check of the cue-similarity effect -----------------------------


def test_nontarget_proximity_statistic():
  table = data.TrialTable(
      cue=np.array([[0.0, 1.0, 2.0]]), report=np.array([[0.0, 2.0, -2.0]]),
      cued=np.array([0]), set_size=np.array([3]), response=np.array([2.3]),
      subject=np.array([''], object), condition=np.array([''], object))
  # 0.3 from the non-target at 2.0, 2.3 from the target: counts; -2.0 is 1.98 away.
  np.testing.assert_array_equal(checks.nontarget_proximity(table, table.response),
                                [[True, False]])
  # Replicates: 0.5 from the target is never counted (too close to the target).
  reps = np.array([[0.5], [-2.1]])
  np.testing.assert_array_equal(checks.nontarget_proximity(table, reps),
                                [[[False, False]], [[False, True]]])


# --- End to end: flags, caching, warnings, PPC, per-stage outputs ---------------------------


@pytest.mark.slow   # Two whole fits of two set sizes (~70 s). Fast twins: the session fixture
# `bays_fit` (fit_behaviour end to end, read by tests/test_end_to_end_fast.py), and here
# test_small_cells_are_flagged_in_the_mixture_csv, test_fingerprint_follows_file_contents_and_
# config and test_finished_mixture_fits_are_read_back_not_refitted.
def test_fit_behaviour_end_to_end_from_flags(tmp_path, caplog):
  table = simulate.large_experiment(jax.random.PRNGKey(3), num_subjects=3, set_sizes=(1, 2, 4),
                                    trials_per_cell=40)
  table = table.take(np.r_[np.arange(len(table) - 39)])   # Subject 3, set size 4: one trial.
  path = str(tmp_path / 'trials.csv')
  data.write_csv(table, path)
  workdir = str(tmp_path / 'wd')
  config = parse_flags(f'--config.data.path={path}', '--config.data.set_sizes=2,4',
                       '--config.fit.svi_steps=30', '--config.fit.cv_folds=0',
                       '--config.fit.num_posterior_samples=20', '--config.fit.ppc_draws=10',
                       '--config.fit.plots=False', '--config.fit.num_fourier=2',
                       '--config.fit.guide=normal', '--config.fit.subject_effects=False')
  config.fit.mixture_models = ['three_component']     # A list field: not settable by flag.
  out = pipeline.fit_behaviour(config, workdir)
  beh = os.path.join(workdir, 'behaviour')
  assert out['complete'] and out['num_trials'] == 3 * 40 + 2 * 40 + 1
  rows = list(csv.DictReader(open(os.path.join(beh, 'mixture_fits.csv'))))
  small = [r for r in rows if r['subject'] == '3' and r['set_size'] == '4']
  assert small[0]['n'] == '1' and 'unreliable' in small[0]['warning']
  assert any('fewer than 30 trials' in w for w in out['warnings'])
  ppc = list(csv.DictReader(open(os.path.join(beh, 'ppc_nontarget_proximity.csv'))))
  assert {r['set_size'] for r in ppc} == {'2', '4'} and tuple(ppc[0]) == checks.PPC_COLUMNS
  for r in ppc:
    assert float(r['model_lower']) <= float(r['model_mean']) <= float(r['model_upper'])
  swap = list(csv.DictReader(open(os.path.join(beh, 'swap_function.csv'))))
  assert tuple(swap[0]) == pipeline.SWAP_FILE_COLUMNS and swap[0]['n'] == '120'
  # Same inputs: the saved summary comes back.
  assert pipeline.fit_behaviour(config, workdir)['timings'] == out['timings']
  # Same file name, edited contents: refit, and the log says why.
  data.write_csv(table.take(np.arange(len(table) - 1)), path)
  with caplog.at_level(py_logging.INFO):
    again = pipeline.fit_behaviour(config, workdir)
  assert again['num_trials'] == out['num_trials'] - 1
  assert 'data file' in caplog.text and 'changed' in caplog.text
  with open(os.path.join(beh, 'summary.json')) as f:
    assert json.load(f)['inputs']['key'] == again['inputs']['key']
  # Emptied file: an error, never the stale results.
  with open(path) as f:
    header = f.readline()
  with open(path, 'w') as f:
    f.write(header)
  with pytest.raises(ValueError, match='no data rows'):
    pipeline.fit_behaviour(config, workdir)


# --- Issue 18: grid data saved to 6 decimals, data errors, interrupted fits -----------------


def six_decimal_grid_csv(path, seed=5, **kwargs):
  """A simulated 8-location-grid experiment written with every angle rounded to 6 decimals,
  as a spreadsheet export would write it; returns the table read back."""
  table = simulate.large_experiment(jax.random.PRNGKey(seed), **kwargs)
  data.write_csv(table, path)
  rows = list(csv.reader(open(path)))
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(rows[0])
    for row in rows[1:]:
      writer.writerow([c if (not c or h in ('subject', 'set_size', 'cued', 'condition'))
                       else f'{float(c):.6f}' for h, c in zip(rows[0], row)])
  return data.load_csv(path)


def test_grid_distances_saved_to_six_decimals_are_one_bin_each(tmp_path):
  table = six_decimal_grid_csv(str(tmp_path / 'grid.csv'), num_subjects=2, set_sizes=(4,),
                               trials_per_cell=60)
  dc, _, _, mask = table.nontargets()
  distance = np.abs(dc[mask])
  assert len(np.unique(np.round(distance, 6))) > 4        # Round-off splits the grid values.
  bins, centres = checks.distance_bins(distance)
  np.testing.assert_allclose(centres, np.pi / 4 * np.arange(1, 5), atol=1e-5)
  count = np.bincount(bins, minlength=len(centres))
  assert np.all(count > 0) and count.sum() == distance.size
  # Every value is in the bin of its grid distance.
  np.testing.assert_array_equal(bins, np.round(distance / (np.pi / 4)).astype(int) - 1)


def test_equal_bins_without_data_are_dropped():
  bins, centres = checks.distance_bins(np.linspace(0.1, 1.0, 40))   # Nothing above 1 rad.
  assert np.all(np.bincount(bins) > 0) and len(centres) == 3


def test_bad_data_file_is_a_user_error_and_leaves_no_folder(tmp_path):
  from rnn_behaviour import errors  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'bad.csv'
  path.write_text('\n'.join(LINES[:2]) + '\ns2,1,1,abc,0.2,,0.5,\n')
  config = fit_csv.get_config()
  config.data.path = str(path)
  workdir = tmp_path / 'wd'
  with pytest.raises(errors.UserError, match="column 'response', data row 2"):
    pipeline.fit_behaviour(config, str(workdir))
  assert not (workdir / 'behaviour').exists()
  config.fit.cv_folds = 1
  with pytest.raises(errors.UserError, match='config.fit.cv_folds'):
    pipeline.fit_behaviour(config, str(workdir))


def test_finished_mixture_fits_are_read_back_not_refitted(tmp_path, monkeypatch):
  table = simulate.large_experiment(jax.random.PRNGKey(1), num_subjects=2, set_sizes=(1, 3),
                                    trials_per_cell=40)
  fc = fit_csv.get_config().fit
  inputs = dict(key='k1')
  first = pipeline._mixture_stage(table, fc, inputs, str(tmp_path), lambda text: None)
  calls = []
  monkeypatch.setattr(mixture, 'fit', lambda *a, **k: calls.append(a) or first[0])
  lines = []
  again = pipeline._mixture_stage(table, fc, inputs, str(tmp_path), lines.append)
  assert calls == [] and 'reusing' in lines[0]
  for a, b in zip(first, again):
    assert a.rows() == b.rows()                        # Exact: floats kept at full precision.
  pipeline._mixture_stage(table, fc, dict(key='k2'), str(tmp_path), lambda text: None)
  assert len(calls) == len(fc.mixture_models)          # Another key: fitted again.


def test_parameters_on_a_bound_reach_the_log(tmp_path):
  table = simulate.large_experiment(jax.random.PRNGKey(2), num_subjects=1, set_sizes=(2,),
                                    trials_per_cell=60)
  perfect = data.TrialTable(**{**table.__dict__, 'response': table.target_report()})
  lines = pipeline._bound_warnings([mixture.fit(perfect, 'three_component')])
  assert len(lines) == 1 and 'kappa' in lines[0] and 'upper clip' in lines[0]


class Killed(Exception):
  pass


@pytest.mark.slow   # Three tiny fit_behaviour runs (~1 min on an idle 2-core machine); the
                    # pieces have fast tests (mixture stage above, folds in test_bns.py).
def test_interrupted_fit_resumes_and_six_decimal_grid_gives_no_false_warning(tmp_path,
                                                                             monkeypatch):
  path = str(tmp_path / 'grid.csv')
  table = six_decimal_grid_csv(path, num_subjects=2, set_sizes=(2, 4), trials_per_cell=60)
  config = parse_flags(f'--config.data.path={path}', '--config.fit.svi_steps=30',
                       '--config.fit.cv_folds=2', '--config.fit.cv_svi_steps=20',
                       '--config.fit.num_posterior_samples=20', '--config.fit.ppc_draws=20',
                       '--config.fit.plots=False', '--config.fit.num_fourier=2',
                       '--config.fit.guide=normal', '--config.fit.subject_effects=False')
  config.fit.mixture_models = ['three_component']
  config.fit.compare_dimensions, config.fit.compare_emissions = [], []
  fresh = pipeline.fit_behaviour(config, str(tmp_path / 'fresh'))
  # 1. Grid data saved to 6 decimals: one PPC row per grid distance, none NaN, no NaN warning.
  ppc = list(csv.DictReader(open(fresh['ppc'])))
  np.testing.assert_allclose(sorted(float(r['cue_distance']) for r in ppc
                                    if r['set_size'] == '4'), np.pi / 4 * np.arange(1, 5),
                             atol=1e-5)
  assert not any('nan' in v.lower() for r in ppc for v in r.values())
  assert not any('nan' in w for w in fresh['warnings'])
  fit = bns_files.load(fresh['bns_fit'])
  swap = checks.swap_probability_by_distance(table, fit, 4, jax.random.PRNGKey(0))
  assert np.all(swap['count'] > 0) and np.all(np.isfinite(swap['empirical']))
  # 6. Killed once the first fold of the BNS cross-validation was saved.
  write = pipeline._write_json

  def kill_after_first_fold(p, obj):
    write(p, obj)
    if os.path.basename(os.fspath(p)).startswith('fold_'):
      raise Killed

  monkeypatch.setattr(pipeline, '_write_json', kill_after_first_fold)
  workdir = str(tmp_path / 'wd')
  with pytest.raises(Killed):
    pipeline.fit_behaviour(config, workdir)
  monkeypatch.setattr(pipeline, '_write_json', write)
  calls = {'mixture': 0, 'bns': 0, 'folds': []}
  mixture_fit, bns_fit, cv = mixture.fit, bns.fit, bns_cv.cross_validate_folds

  def count(name, fn):
    def wrapped(*a, **k):
      calls[name] += 1
      return fn(*a, **k)
    return wrapped

  def counted_cv(*a, **k):
    calls['folds'].append(sorted(k.get('done') or {}))
    return cv(*a, **k)

  monkeypatch.setattr(mixture, 'fit', count('mixture', mixture_fit))
  monkeypatch.setattr(bns, 'fit', count('bns', bns_fit))
  monkeypatch.setattr(bns_cv, 'cross_validate_folds', counted_cv)
  resumed = pipeline.fit_behaviour(config, workdir)
  assert resumed['complete']
  assert calls['mixture'] == 0 and calls['bns'] == 0 and calls['folds'] == [[0]]
  beh, ref = os.path.join(workdir, 'behaviour'), os.path.join(str(tmp_path / 'fresh'),
                                                              'behaviour')
  for name in ('mixture_fits.csv', 'swap_function.csv', 'ppc_nontarget_proximity.csv'):
    assert open(os.path.join(beh, name)).read() == open(os.path.join(ref, name)).read(), name
  for k, v in bns_files.load(os.path.join(beh, 'bns_fit')).samples.items():
    np.testing.assert_array_equal(v, fit.samples[k])
  got = {r['model']: r for r in resumed['comparison']}
  for r in fresh['comparison']:
    assert got[r['model']]['heldout_lpd'] == pytest.approx(r['heldout_lpd'], rel=1e-5, abs=1e-4)
