"""Trial table, the Bays (2009) loader, the CSV format: round trips and every bad input."""

import os

import numpy as np
import pytest

from rnn_behaviour.behaviour import data

BAYS = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'bays2009',
                    'bays_data.mat')
needs_bays = pytest.mark.skipif(not os.path.exists(BAYS), reason='Bays 2009 file not present')


def random_table(seed=0, num_trials=50):
  rng = np.random.default_rng(seed)
  sizes = rng.choice([1, 2, 3, 5], num_trials)
  width = sizes.max()
  mask = np.arange(width)[None] < sizes[:, None]
  feats = lambda: np.where(mask, rng.uniform(-np.pi, np.pi, (num_trials, width)), np.nan)
  return data.TrialTable(cue=feats(), report=feats(), cued=rng.integers(0, sizes),
                         set_size=sizes, response=rng.uniform(-np.pi, np.pi, num_trials),
                         subject=rng.choice(['s1', 's2', 'x y'], num_trials).astype(object),
                         condition=rng.choice(['a', 'b'], num_trials).astype(object))


def assert_tables_equal(a, b, exact=True):
  for f in ('cue', 'report', 'response'):
    if exact:
      np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    else:
      np.testing.assert_allclose(getattr(a, f), getattr(b, f), atol=1e-12, equal_nan=True)
  for f in ('cued', 'set_size', 'subject', 'condition'):
    assert list(getattr(a, f)) == list(getattr(b, f)), f


def test_csv_round_trip_is_exact(tmp_path):
  table = random_table()
  path = str(tmp_path / 't.csv')
  data.write_csv(table, path)
  assert_tables_equal(table, data.load_csv(path))


def test_csv_round_trip_degrees(tmp_path):
  table = random_table(1)
  path = str(tmp_path / 't.csv')
  data.write_csv(table, path, angle_unit='degrees')
  assert_tables_equal(table, data.load_csv(path, angle_unit='degrees'), exact=False)


def test_zero_to_two_pi_convention_is_wrapped(tmp_path):
  path = tmp_path / 't.csv'
  path.write_text('set_size,cued,response,cue_1,cue_2,report_1,report_2\n'
                  '2,2,6.0,0.5,4.0,3.5,1.0\n')
  t = data.load_csv(str(path))
  np.testing.assert_allclose(t.response, [6.0 - 2 * np.pi])
  np.testing.assert_allclose(t.cue[0], [0.5, 4.0 - 2 * np.pi])
  assert t.cued[0] == 1 and t.subject[0] == '' and t.condition[0] == ''
  np.testing.assert_allclose(t.error(), [np.angle(np.exp(1j * (6.0 - 1.0)))])


HEADER = 'subject,set_size,cued,response,cue_1,cue_2,report_1,report_2'
GOOD = 's1,2,1,0.1,0.2,1.5,-0.4,2.0'

BAD_CASES = [
    # (header, bad row, column named in the error, message fragment, angle unit)
    ('subject,set_size,cued,cue_1,cue_2,report_1,report_2', 's1,2,1,0.2,1.5,-0.4,2.0',
     'response', 'missing column', 'radians'),
    (HEADER.replace(',cue_2', ''), 's1,2,1,0.1,0.2,-0.4,2.0', 'cue_2', 'missing column',
     'radians'),
    (HEADER, 's1,2,1,7.0,0.2,1.5,-0.4,2.0', 'response', 'outside', 'radians'),
    (HEADER, 's1,2,1,90,0.2,1.5,-0.4,2.0', 'response', "angle_unit='degrees'", 'radians'),
    (HEADER, 's1,2,1,10,20,400,-40,20', 'cue_2', 'outside', 'degrees'),
    (HEADER, 's1,2,1,0.1,0.2,1.5,nan,2.0', 'report_1', 'NaN', 'radians'),
    (HEADER, 's1,2,1,0.1,0.2,,-0.4,2.0', 'cue_2', 'empty', 'radians'),
    (HEADER, 's1,,1,0.1,0.2,1.5,-0.4,2.0', 'set_size', 'empty', 'radians'),
    (HEADER, 's1,2,3,0.1,0.2,1.5,-0.4,2.0', 'cued', 'out of range', 'radians'),
    (HEADER, 's1,2,0,0.1,0.2,1.5,-0.4,2.0', 'cued', 'out of range', 'radians'),
    (HEADER, 's1,1,1,0.1,0.2,1.5,-0.4,2.0', 'cue_2', 'set_size is 1', 'radians'),
    (HEADER, 's1,1,1,0.1,0.2,,-0.4,2.0', 'report_2', 'set_size is 1', 'radians'),
    (HEADER, 's1,2.5,1,0.1,0.2,1.5,-0.4,2.0', 'set_size', 'integer', 'radians'),
    (HEADER, 's1,2,1,abc,0.2,1.5,-0.4,2.0', 'response', 'not a number', 'radians'),
]


@pytest.mark.parametrize('header,row,column,fragment,unit', BAD_CASES)
def test_bad_csv_names_file_column_and_row(tmp_path, header, row, column, fragment, unit):
  path = tmp_path / 'bad.csv'
  good = GOOD if unit == 'radians' else 's1,2,1,10,20,90,-40,20'
  n_fields = len(header.split(','))
  good = ','.join(good.split(',')[:n_fields]) if 'missing' not in fragment else row
  path.write_text(f'{header}\n{good}\n{row}\n')
  with pytest.raises(ValueError) as err:
    data.load_csv(str(path), angle_unit=unit)
  msg = str(err.value)
  assert str(path) in msg and column in msg and fragment in msg, msg
  if 'missing column' not in fragment or column != 'response':
    # The first bad row: row 1 is good (or equally bad for missing columns), row 2 is bad.
    assert ('data row 2' in msg) or ('data row 1' in msg and 'missing' in fragment), msg


def test_selection_is_explicit(tmp_path):
  table = random_table(2, 200)
  sub = table.select(subjects=['s1'], set_sizes=[2, 3])
  assert set(sub.subject) == {'s1'} and set(sub.set_size) <= {2, 3}
  assert len(sub) == np.sum((table.subject == 's1') & np.isin(table.set_size, [2, 3]))
  assert sub.max_set_size == 3
  with pytest.raises(ValueError, match=r'set_size \[4\] not in the data'):
    table.select(set_sizes=[4])
  with pytest.raises(ValueError, match='condition'):
    table.select(conditions=['zzz'])
  path = str(tmp_path / 't.csv')
  data.write_csv(table, path)
  assert len(data.load_csv(path, conditions=['a'])) == np.sum(table.condition == 'a')


def test_nontargets_geometry():
  table = random_table(3, 30)
  dc, dr, rep, mask = table.nontargets()
  assert np.array_equal(mask.sum(1), table.set_size - 1)
  for t in range(len(table)):
    others = [j for j in range(table.set_size[t]) if j != table.cued[t]]
    np.testing.assert_allclose(rep[t, :len(others)], table.report[t, others])
    np.testing.assert_allclose(np.cos(dc[t, :len(others)]),
                               np.cos(table.cue[t, others] - table.cue[t, table.cued[t]]))


@needs_bays
def test_bays2009_loader():
  t = data.load_bays2009(BAYS)
  assert len(t) == 7271 and t.set_sizes() == [1, 2, 4, 6] and len(t.subjects()) == 12
  # Locations are multiples of pi/4 once the (pi/180)^2 storage quirk is undone.
  cues = t.cue[~np.isnan(t.cue)] / (np.pi / 4)
  np.testing.assert_allclose(cues, np.round(cues), atol=1e-6)
  assert np.all(t.cued == 0) and np.all((t.response >= -np.pi) & (t.response < np.pi))
  dc, _, _, mask = t.nontargets()
  assert np.abs(dc[mask]).min() > np.pi / 4 - 1e-6     # Distinct locations.
  sub = data.load_bays2009(BAYS, subjects=['3'], set_sizes=[4])
  assert len(sub) == 150 and sub.max_set_size == 4
  with pytest.raises(ValueError, match='subject'):
    data.load_bays2009(BAYS, subjects=['13'])
  with pytest.raises(ValueError, match='delay_as_condition'):
    data.load_bays2009(BAYS, conditions=['100'])
  by_delay = data.load_bays2009(BAYS, conditions=['100'], delay_as_condition=True)
  assert set(by_delay.condition) == {'100'} and len(by_delay) == 2436


def test_missing_file_message(tmp_path):
  with pytest.raises(FileNotFoundError, match='osf.io'):
    data.load_bays2009(str(tmp_path / 'nope.mat'))


# --- Issue 18: one clear error, delimiters, 1-based cued, radians declared as degrees ----------


def test_data_errors_are_user_errors(tmp_path):
  from rnn_behaviour import errors  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'bad.csv'
  path.write_text(HEADER + '\ns1,2,1,abc,0.2,1.5,-0.4,2.0\n')
  with pytest.raises(errors.UserError, match="column 'response', data row 1 \\(line 2\\)"):
    data.load_csv(str(path))
  with pytest.raises(errors.UserError, match='no such file'):
    data.load_csv(str(tmp_path / 'missing.csv'))


def test_tab_separated_file_is_read(tmp_path):
  rows = [HEADER, 's1,2,1,0.1,0.2,1.5,-0.4,2.0', 's2,1,1,0.3,0.2,,0.5,']
  commas, tabs = tmp_path / 'c.csv', tmp_path / 't.tsv'
  commas.write_text('\n'.join(rows) + '\n')
  tabs.write_text('\n'.join(r.replace(',', '\t') for r in rows) + '\n')
  assert_tables_equal(data.load_csv(str(commas)), data.load_csv(str(tabs)), exact=True)


def test_one_field_header_says_so(tmp_path):
  path = tmp_path / 'pipes.csv'
  path.write_text(HEADER.replace(',', '|') + '\n' + 's1|2|1|0.1|0.2|1.5|-0.4|2.0\n')
  with pytest.raises(ValueError, match='header is one field'):
    data.load_csv(str(path))


def test_cued_zero_says_the_index_is_one_based(tmp_path):
  path = tmp_path / 'zero.csv'
  path.write_text(HEADER + '\ns1,2,0,0.1,0.2,1.5,-0.4,2.0\n')
  with pytest.raises(ValueError, match='1-based.*0-based file: add 1'):
    data.load_csv(str(path))


def test_radians_declared_as_degrees_are_refused(tmp_path):
  table = random_table(0)
  path = str(tmp_path / 'rad.csv')
  data.write_csv(table, path)                     # Radians.
  with pytest.raises(ValueError, match='every angle lies within \\+-2 pi.*angle_unit=radians'):
    data.load_csv(path, angle_unit='degrees')
  data.write_csv(table, path, angle_unit='degrees')
  assert len(data.load_csv(path, angle_unit='degrees')) == len(table)
