"""Trial data: the canonical trial table (METHOD sec. 1), its loaders and its CSV writer.

`TrialTable` holds one row a trial as host (numpy) arrays:

  cue, report: (T, N_max) float radians in [-pi, pi), NaN past the trial's set size.
  cued:        (T,) int, 0-based index of the target item.
  set_size:    (T,) int.
  response:    (T,) float radians in [-pi, pi).
  subject, condition: (T,) str, '' where the data set has none.

Loaders:

* `load_bays2009(path)` reads the Bays, Catalao & Husain (2009) MATLAB file
  (see `shared/data/bays2009/README.md`; the public copy is on OSF, osf.io/c2yx5). The target is
  stored as item 0 and the non-targets follow in the file's order.
* `load_csv(path)` reads the lab-neutral CSV format below; `write_csv(table, path)` writes it.

CSV format, one row a trial, a header row first:

  set_size   positive integer N of the trial.
  cued       the number j (1-based) of the cued item, matching the suffix of cue_j / report_j.
  response   reported feature.
  cue_1 .. cue_M, report_1 .. report_M   item features, M >= the largest set size;
             cells past the trial's set size are left empty.
  subject, condition   optional, free text.

Angles are radians, either in [-pi, pi) or in [0, 2 pi) (any value in [-pi, 2 pi] is accepted),
unless the caller declares `angle_unit='degrees'` (then [-180, 360]). Values are wrapped to
[-pi, pi) on load. A file declared in degrees whose angles all lie within +-2 pi is refused (it
holds radians). Fields are separated by commas, or by tabs or semicolons when the header line
has no comma. Every validation failure raises `errors.DataError` (a ValueError and a
`UserError`: one line, no traceback, from the command line) naming the file, the column and
the first bad row (data rows count from 1; the header is line 1 of the file, so data row r is
line r + 1).

Selections (subjects, set sizes, conditions) are explicit arguments; a request for a value the
data do not contain is an error, never an empty result.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Sequence

from etils import epath
import jax.numpy as jnp
import numpy as np
import scipy.io

from rnn_behaviour import circular
from rnn_behaviour import errors
from rnn_behaviour import files
from rnn_behaviour import task as task_lib
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.behaviour import trial_files

ANGLE_UNITS = trial_files.ANGLE_UNITS

# Every error about the data: a ValueError and a UserError (errors.py).
DataError = errors.DataError


@dataclasses.dataclass(frozen=True)
class TrialTable:
  """The canonical trial table; every array has the trial axis first (see module doc)."""
  cue: np.ndarray
  report: np.ndarray
  cued: np.ndarray
  set_size: np.ndarray
  response: np.ndarray
  subject: np.ndarray
  condition: np.ndarray
  source: str = ''

  def __post_init__(self):
    t = self.response.shape[0]
    for name in ('cue', 'report'):
      a = getattr(self, name)
      if a.ndim != 2 or a.shape[0] != t:
        raise ValueError(f'TrialTable.{name} must be (T={t}, N_max), got {a.shape}')
    for name in ('cued', 'set_size', 'subject', 'condition'):
      if getattr(self, name).shape != (t,):
        raise ValueError(f'TrialTable.{name} must be ({t},), got {getattr(self, name).shape}')

  @property
  def num_trials(self) -> int:
    return int(self.response.shape[0])

  @property
  def max_set_size(self) -> int:
    return int(self.cue.shape[1])

  def __len__(self) -> int:
    return self.num_trials

  def subjects(self) -> list[str]:
    """Distinct subjects, sorted numerically where they are all integers."""
    return _sorted_labels(self.subject)

  def conditions(self) -> list[str]:
    return _sorted_labels(self.condition)

  def set_sizes(self) -> list[int]:
    return sorted(int(n) for n in np.unique(self.set_size))

  def target_report(self) -> np.ndarray:
    """(T,) the cued item's report feature."""
    return np.take_along_axis(self.report, self.cued[:, None], axis=1)[:, 0]

  def target_cue(self) -> np.ndarray:
    return np.take_along_axis(self.cue, self.cued[:, None], axis=1)[:, 0]

  def error(self) -> np.ndarray:
    """(T,) response error wrap(response - target report), radians."""
    return circular.wrap(self.response - self.target_report())

  def item_mask(self) -> np.ndarray:
    """(T, N_max) bool, True at the items that exist (index < set size)."""
    return np.arange(self.max_set_size)[None, :] < self.set_size[:, None]

  def nontargets(self):
    """Non-target items moved to the front of each row, target removed.

    Returns:
      cue_distance, report_distance: (T, N_max - 1) wrap(c_j - c_k), wrap(r_j - r_k), radians.
      report: (T, N_max - 1) non-target report features.
      mask: (T, N_max - 1) bool, True at real non-targets.
    """
    n = self.max_set_size
    # Column order per row: all items except the cued one, in their original order.
    others = np.arange(n - 1)[None, :] + (np.arange(n - 1)[None, :] >= self.cued[:, None])
    cue = np.take_along_axis(self.cue, others, axis=1) if n > 1 else np.zeros((len(self), 0))
    report = (np.take_along_axis(self.report, others, axis=1) if n > 1
              else np.zeros((len(self), 0)))
    mask = others < self.set_size[:, None]
    dc = np.where(mask, circular.wrap(cue - self.target_cue()[:, None]), 0.0)
    dr = np.where(mask, circular.wrap(report - self.target_report()[:, None]), 0.0)
    return dc, dr, np.where(mask, report, 0.0), mask

  def take(self, index) -> 'TrialTable':
    """Rows `index` (bool mask or integer indices); columns past the new largest set size go."""
    index = np.asarray(index)
    sizes = self.set_size[index]
    width = int(sizes.max()) if sizes.size else self.max_set_size
    return TrialTable(cue=self.cue[index][:, :width], report=self.report[index][:, :width],
                      cued=self.cued[index], set_size=sizes, response=self.response[index],
                      subject=self.subject[index], condition=self.condition[index],
                      source=self.source)

  def select(self, subjects: Sequence | None = None, set_sizes: Sequence | None = None,
             conditions: Sequence | None = None) -> 'TrialTable':
    """Rows of the named subjects, set sizes and conditions; None or empty means all.

    Raises ValueError for any requested value the table does not contain.
    """
    keep = np.ones(len(self), bool)
    for field, wanted, have in (('subject', subjects, self.subject),
                                ('condition', conditions, self.condition),
                                ('set_size', set_sizes, self.set_size)):
      if wanted is None or len(wanted) == 0:
        continue
      wanted = [int(w) for w in wanted] if field == 'set_size' else [str(w) for w in wanted]
      present = set(have.tolist())
      missing = [w for w in wanted if w not in present]
      if missing:
        raise DataError(f'{self.source or "trial table"}: requested {field} {missing} not in '
                        f'the data (present: {_sorted_labels(have)})')
      keep &= np.isin(have, wanted)
    return self.take(keep)

  def displays(self) -> task_lib.Displays:
    """The trials as task Displays; all trials must share one set size."""
    sizes = np.unique(self.set_size)
    if sizes.size != 1:
      raise ValueError(f'displays() needs a single set size, the table has {sizes.tolist()}')
    n = int(sizes[0])
    return task_lib.Displays(cue=jnp.asarray(self.cue[:, :n], jnp.float32),
                             report=jnp.asarray(self.report[:, :n], jnp.float32),
                             cued=jnp.asarray(self.cued, jnp.int32))


def from_displays(displays: task_lib.Displays, responses, subject: str = '',
                  condition: str = '') -> TrialTable:
  """A table of K displays and their responses (K,) or (K, S) (S responses a display)."""
  responses = np.asarray(responses, np.float64)
  if responses.ndim == 1:
    responses = responses[:, None]
  k, s = responses.shape
  rep = lambda a: np.repeat(np.asarray(a), s, axis=0)
  # float32 angles can sit just below float64 -pi; re-wrap them in float64.
  return TrialTable(cue=_wrap_exact(rep(displays.cue).astype(np.float64)),
                    report=_wrap_exact(rep(displays.report).astype(np.float64)),
                    cued=rep(displays.cued).astype(np.int64),
                    set_size=np.full(k * s, displays.num_items, np.int64),
                    response=_wrap_exact(responses.reshape(-1)),
                    subject=np.full(k * s, subject, object),
                    condition=np.full(k * s, condition, object), source='simulated')


def concatenate(tables: Sequence[TrialTable]) -> TrialTable:
  """Stacks tables row-wise, NaN-padding items to the largest set size."""
  width = max(t.max_set_size for t in tables)
  pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan)
  cat = lambda f: np.concatenate([f(t) for t in tables])
  return TrialTable(cue=cat(lambda t: pad(t.cue)), report=cat(lambda t: pad(t.report)),
                    cued=cat(lambda t: t.cued), set_size=cat(lambda t: t.set_size),
                    response=cat(lambda t: t.response), subject=cat(lambda t: t.subject),
                    condition=cat(lambda t: t.condition), source=tables[0].source)


def _sorted_labels(values) -> list:
  values = np.unique(np.asarray(values))
  try:
    return sorted(values.tolist(), key=lambda v: (float(v), str(v)))
  except (TypeError, ValueError):
    return sorted(values.tolist(), key=str)


def _wrap_exact(x):
  """wrap(x) that leaves values already in [-pi, pi) bit-identical (CSV round trips exactly)."""
  x = np.asarray(x, np.float64)
  inside = (x >= -np.pi) & (x < np.pi)
  return np.where(inside | np.isnan(x), x, circular.wrap(x))


# --------------------------------------------------------------------------------------------
# Bays et al. (2009)
# --------------------------------------------------------------------------------------------

_BAYS_FIELDS = ('subject', 'n_items', 'delay', 'response', 'target', 'nontarget', 'target_pos',
                'nontarget_pos')


def load_bays2009(path: str, *, subjects: Sequence | None = None,
                  set_sizes: Sequence | None = None, conditions: Sequence | None = None,
                  delay_as_condition: bool = False) -> TrialTable:
  """Loads Bays, Catalao & Husain (2009), `bays_data.mat`, as a TrialTable.

  Cue feature = location, report feature = colour. The file stores locations as degrees times
  (pi/180)^2 (see the data README); they are converted to radians (multiples of pi/4). The
  target is item 0 of every row.

  Args:
    path: the .mat file.
    subjects: subject labels ('1'..'12' or ints) to keep; None/empty: all.
    set_sizes: set sizes to keep (of 1, 2, 4, 6); None/empty: all.
    conditions: with delay_as_condition, sample-array durations to keep ('100', '500',
      '2000'); must be None/empty otherwise.
    delay_as_condition: put the sample-array duration (ms) in the `condition` column, so that
      fits are made per duration; by default condition is '' and durations are pooled.
  """
  if epath.Path(path).is_dir():
    trial_files.check_file(path)
  if not epath.Path(path).exists():
    raise errors.DataFileNotFound(
        f'{path}: no such file. The Bays et al. (2009) data are public at osf.io/c2yx5 '
        '(bays_data.mat); pass its location as --config.data.path=...')
  try:
    raw = scipy.io.loadmat(io.BytesIO(epath.Path(path).read_bytes()))
  except Exception as e:  # scipy raises several types for non-MATLAB input.
    raise DataError(f'{path}: not a readable MATLAB file ({e})') from e
  missing = [f for f in _BAYS_FIELDS if f not in raw]
  if missing:
    raise DataError(f'{path}: missing field(s) {missing}; expected {list(_BAYS_FIELDS)}')
  col = lambda f: np.asarray(raw[f], np.float64)
  n_trials = col('response').shape[0]
  set_size = col('n_items')[:, 0].astype(np.int64)
  width = int(set_size.max())
  nontarget, nontarget_pos = col('nontarget'), col('nontarget_pos')
  report = np.concatenate([col('target'), nontarget], axis=1)[:, :width]
  # Stored location = degrees * (pi/180)^2, so radians = stored * 180 / pi.
  cue = np.concatenate([col('target_pos'), nontarget_pos], axis=1)[:, :width] * (180.0 / np.pi)
  mask = np.arange(width)[None, :] < set_size[:, None]
  for name, values in (('target/nontarget', report), ('target_pos/nontarget_pos', cue)):
    bad = np.nonzero((np.isnan(values) & mask).any(1) | (~np.isnan(values) & ~mask).any(1))[0]
    if bad.size:
      raise DataError(f'{path}: field {name} disagrees with n_items at row {bad[0] + 1}')
  response = col('response')[:, 0]
  if np.isnan(response).any():
    raise DataError(f'{path}: field response is NaN at row {np.isnan(response).argmax() + 1}')
  condition = (col('delay')[:, 0].astype(np.int64).astype(str).astype(object)
               if delay_as_condition else np.full(n_trials, '', object))
  if conditions and not delay_as_condition:
    raise DataError(f'{path}: conditions={list(conditions)} requested but the Bays file has '
                    'conditions only with delay_as_condition=True (sample-array duration)')
  table = TrialTable(
      cue=np.where(mask, _wrap_exact(cue), np.nan), report=np.where(mask, _wrap_exact(report),
                                                                      np.nan),
      cued=np.zeros(n_trials, np.int64), set_size=set_size, response=_wrap_exact(response),
      subject=col('subject')[:, 0].astype(np.int64).astype(str).astype(object),
      condition=condition, source=path)
  return table.select(subjects, set_sizes, conditions)


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------

def load_csv(path: str, *, angle_unit: str = 'radians', subjects: Sequence | None = None,
             set_sizes: Sequence | None = None,
             conditions: Sequence | None = None) -> TrialTable:
  """Reads the trial CSV format of the module doc, validating every row.

  Args:
    path: the CSV file.
    angle_unit: 'radians' ([-pi, pi) or [0, 2 pi)) or 'degrees' ([-180, 180) or [0, 360)).
    subjects, set_sizes, conditions: explicit selections; None/empty: all.

  Raises:
    ValueError naming the file, the column and the first bad data row for: missing columns,
    angles outside the unit's range, NaN or empty required fields, `cued` out of range, a set
    size that disagrees with the items given, unparsable numbers.
  """
  if angle_unit not in ANGLE_UNITS:
    raise DataError(f'angle_unit must be one of {ANGLE_UNITS}, got {angle_unit!r}')
  trial_files.check_file(path)
  header, rows = trial_files.read_rows(path)
  parsed = trial_files.parse_rows(path, header, rows, angle_unit)
  set_size = parsed['set_size']
  width = int(set_size.max())
  cue, report, response = parsed['cue'], parsed['report'], parsed['response']
  if angle_unit == 'degrees':
    trial_files.check_not_radians(path, response, cue[:, :width], report[:, :width])
  scale = 1.0 if angle_unit == 'radians' else np.pi / 180.0
  table = TrialTable(cue=_wrap_exact(cue[:, :width] * scale),
                     report=_wrap_exact(report[:, :width] * scale), cued=parsed['cued'],
                     set_size=set_size, response=_wrap_exact(response * scale),
                     subject=parsed['subject'], condition=parsed['condition'], source=path)
  return table.select(subjects, set_sizes, conditions)


def write_csv(table: TrialTable, path: str, *, angle_unit: str = 'radians') -> None:
  """Writes `table` in the CSV format of the module doc (lossless for radians: 17 digits).

  `subject` and `condition` columns are written when any row has one.
  """
  if angle_unit not in ANGLE_UNITS:
    raise DataError(f'angle_unit must be one of {ANGLE_UNITS}, got {angle_unit!r}')
  scale = 1.0 if angle_unit == 'radians' else 180.0 / np.pi
  n_max = table.max_set_size
  with_subject = any(s != '' for s in table.subject)
  with_condition = any(c != '' for c in table.condition)
  header = (['subject'] if with_subject else []) + (['condition'] if with_condition else []) + [
      'set_size', 'cued', 'response'] + [f'cue_{j}' for j in range(1, n_max + 1)] + [
          f'report_{j}' for j in range(1, n_max + 1)]
  fmt = lambda x: float(x) * scale      # Written at full precision (`files.csv_cell`).
  rows = []
  for t in range(table.num_trials):
    n = int(table.set_size[t])
    row = ([table.subject[t]] if with_subject else []) + (
        [table.condition[t]] if with_condition else [])
    row += [n, int(table.cued[t]) + 1, fmt(table.response[t])]
    for feats in (table.cue, table.report):
      row += [fmt(feats[t, j]) if j < n else '' for j in range(n_max)]
    rows.append(row)
  epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
  files.write_csv(path, header, rows)


SELECTION_FIELDS = ('subjects', 'set_sizes', 'conditions')


def parse_selection(value, field: str) -> list:
  """A selection from a config: a list/tuple, or a comma-separated string; [] means all.

  From the command line `--config.data.set_sizes=2,4` (the field is a tuple) arrives as
  (2, 4), `--config.data.subjects=s01,s02` as ('s01,s02',) and `'2,4'` typed in Python as a
  string; all of them mean the same selection. Set sizes become ints (ValueError naming
  `config.data.<field>` for anything else), subjects and conditions strings.

  Args:
    value: None, str, int, or a list/tuple of str/int.
    field: 'subjects', 'set_sizes' or 'conditions' (named in errors).
  """
  if value is None:
    return []
  items = list(value) if isinstance(value, (list, tuple)) else [value]
  parts = []
  for item in items:
    if isinstance(item, str):
      parts += _split_list_text(item)
    elif isinstance(item, (int, np.integer)) or (isinstance(item, float)
                                                   and float(item).is_integer()):
      parts.append(int(item))
    else:
      raise DataError(f'config.data.{field}: cannot read {item!r} in {value!r} (expected '
                      "a comma-separated list such as '2,4')")
  if field != 'set_sizes':
    return [str(p) for p in parts]
  out = []
  for p in parts:
    try:
      n = int(p) if isinstance(p, int) else int(float(p)) if float(p).is_integer() else None
    except ValueError:
      n = None
    if n is None or n < 1:
      raise DataError(f'config.data.set_sizes: {p!r} is not a positive integer (got '
                      f'{value!r}; e.g. --config.data.set_sizes=2,4)')
    out.append(n)
  return out


def _split_list_text(text: str) -> list[str]:
  """'2,4', '[2, 4]', "('s1', 's2')" -> ['2', '4'] / ['s1', 's2']; '' -> []."""
  text = text.strip()
  if text[:1] in '[(' and text[-1:] in '])':
    text = text[1:-1]
  parts = [p.strip().strip('\'"').strip() for p in text.split(',')]
  return [p for p in parts if p]


def load(data_config) -> TrialTable:
  """The table a config's `data` block names (format, path, unit, selections)."""
  c = data_config
  path = resolve_path(c.path)
  sel = {f: parse_selection(c.get(f), f) for f in SELECTION_FIELDS}
  if c.format == 'bays2009':
    return load_bays2009(path, **sel,
                         delay_as_condition=bool(c.get('delay_as_condition', False)))
  if c.format == 'csv':
    return load_csv(path, angle_unit=c.angle_unit, **sel)
  raise DataError(f"config.data.format must be 'bays2009' or 'csv', got {c.format!r}")


def resolve_path(path: str) -> str:
  """A data path as given, else relative to the repository root (the package's parent)."""
  if not path:
    raise DataError('config.data.path is empty; pass --config.data.path=...')
  if not workdir_lib.is_local(path):
    return path          # A cloud path (gs://...) is absolute.
  if os.path.isabs(path) or os.path.exists(path):
    return path
  repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  candidate = os.path.normpath(os.path.join(repo_root, path))
  if os.path.exists(candidate):
    return candidate
  raise errors.DataFileNotFound(
      f'config.data.path={path!r} not found relative to the current directory '
      f'({os.getcwd()}) nor to the repository root ({repo_root})')


def cell_labels(table: TrialTable):
  """Distinct (subject, set_size, condition) cells in sorted order and each trial's cell index."""
  keys = list(zip(table.subject.tolist(), table.set_size.tolist(), table.condition.tolist()))
  order = lambda k: (_num_or_str(k[0]), k[1], _num_or_str(k[2]))
  cells = sorted(set(keys), key=order)
  lookup = {k: i for i, k in enumerate(cells)}
  return cells, np.array([lookup[k] for k in keys], np.int64)


def _num_or_str(v):
  try:
    return (0, float(v), '')
  except ValueError:
    return (1, 0.0, str(v))
