"""Reading trial files: checks of the file itself, and the trial CSV format (data.py's module
doc) read line by line, its header checked and every cell parsed with an error that names the
file, the column and the row."""

from __future__ import annotations

import csv
import math

from etils import epath
import numpy as np

from rnn_behaviour import errors

ANGLE_UNITS = ('radians', 'degrees')
# Accepted raw ranges per unit: the union of the [-pi, pi) and [0, 2 pi) conventions (closed,
# since files written as [-pi, pi] exist, the Bays file among them).
ANGLE_RANGE = {'radians': (-np.pi, 2.0 * np.pi), 'degrees': (-180.0, 360.0)}
RANGE_TEXT = {'radians': '[-pi, 2*pi]', 'degrees': '[-180, 360]'}
# float32 pi exceeds float64 pi by 8.7e-8; files written from float32 arrays must still load.
RANGE_SLACK = 1e-6
REQUIRED = ('set_size', 'cued', 'response')


def is_empty(text: str) -> bool:
  return text.strip() == ''


DELIMITERS = (',', '\t', ';')


def delimiter(header_line: str) -> str:
  """The field separator of a trial file from its header line: a comma, unless the header has
  no comma and does have tabs (a spreadsheet's "tab-separated" export) or semicolons (a
  spreadsheet's CSV export in locales whose decimal mark is a comma)."""
  if ',' in header_line:
    return ','
  counts = {d: header_line.count(d) for d in DELIMITERS[1:]}
  best = max(counts, key=counts.get)
  return best if counts[best] else ','


# A degrees file spans far more than +-2 pi: delayed-estimation responses cover the circle. A
# file declared in degrees whose every angle lies within +-2 pi holds radians.
RADIANS_LIMIT = 2.0 * np.pi + RANGE_SLACK


def check_not_radians(path, *angles) -> None:
  """Raises DataError when every (non-NaN) angle of a file declared in degrees is within
  +-2 pi: read as degrees, such a file would squeeze every angle into +-0.11 rad."""
  values = np.concatenate([np.ravel(a) for a in angles])
  values = values[~np.isnan(values)]
  if values.size and np.all(np.abs(values) <= RADIANS_LIMIT):
    raise errors.DataError(
        f'{path}: declared in degrees (angle_unit=degrees) but every angle lies within +-2 pi '
        f'(largest |angle| {np.max(np.abs(values)):.4g}): these are radians. Read as degrees '
        'they would all fall within +-0.11 rad and the fit would be meaningless; pass '
        '--config.data.angle_unit=radians')


def check_file(path: str) -> None:
  """Raises a clear error unless `path` is an existing regular file (not a directory)."""
  if epath.Path(path).is_dir():
    raise errors.DataError(f'{path} is a directory; config.data.path must name a data file '
                    '(a .csv trial table or the Bays 2009 .mat file)')
  if not epath.Path(path).exists():
    raise errors.DataFileNotFound(f'{path}: no such file')


def read_text_lines(path: str) -> list[str]:
  """The lines of a UTF-8 text file (a leading byte-order mark dropped), line ends kept.

  Spreadsheet programs often save CSV as "UTF-8 with BOM"; without stripping it the first
  column name would read '\ufeffsubject'. A file that is not UTF-8 text (Latin-1 accents, a
  binary .mat file, NUL bytes) raises ValueError naming the file and the first bad line.
  """
  raw = epath.Path(path).read_bytes()
  if raw.startswith(b'\xef\xbb\xbf'):
    raw = raw[3:]
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    line = raw.count(b'\n', 0, e.start) + 1
    hint = (' It looks like a MATLAB file: use --config.data.format=bays2009.'
            if raw.startswith(b'MATLAB') else
            ' Save it as UTF-8 (e.g. "CSV UTF-8" in a spreadsheet program).')
    raise errors.DataError(f'{path}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at '
                    f'byte offset {e.start}).{hint}') from None
  if '\x00' in text:
    line = text.count('\n', 0, text.index('\x00')) + 1
    raise errors.DataError(f'{path}: line {line}: NUL byte; this is a binary file, not a CSV '
                    'trial table') from None
  return text.splitlines(keepends=True)


def read_rows(path: str) -> tuple[list[str], list[list[str]]]:
  """(header, data rows) of a trial CSV, trailing blank rows dropped; raises DataError for a
  file that is not CSV, has no header or data, repeats a column or misses a required one."""
  lines = read_text_lines(path)
  reader = csv.reader(lines, delimiter=delimiter(lines[0] if lines else ''))
  try:
    parsed = list(reader)
  except csv.Error as e:
    raise errors.DataError(f'{path}: line {reader.line_num}: not a CSV file ({e})') from None
  if not parsed:
    raise errors.DataError(f'{path}: empty file (expected a header row)')
  header, rows = [h.strip() for h in parsed[0]], parsed[1:]
  # Trailing blank lines are common in hand-written files; they are not trials.
  while rows and all(is_empty(c) for c in rows[-1]):
    rows.pop()
  if not rows:
    raise errors.DataError(f'{path}: no data rows')
  dupes = sorted({h for h in header if header.count(h) > 1})
  if dupes:
    raise errors.DataError(f'{path}: duplicate column(s) {dupes}')
  missing = [c for c in REQUIRED if c not in header]
  if missing:
    hint = (' (the header is one field: this reader splits on commas, tabs or semicolons, and '
            'found none of them in the header line)' if len(header) == 1 else '')
    raise errors.DataError(f'{path}: missing column(s) {missing}; the header is {header}{hint}')
  return header, rows


def item_columns(header: list[str]) -> dict:
  """{'cue': [j...], 'report': [j...]}: the item numbers of the cue_j and report_j columns."""
  item_cols = {}
  for prefix in ('cue', 'report'):
    nums = sorted(int(h[len(prefix) + 1:]) for h in header
                  if h.startswith(prefix + '_') and h[len(prefix) + 1:].isdigit())
    item_cols[prefix] = nums
  return item_cols


class Cells:
  """The cells of a trial CSV's data rows, parsed and checked; errors name the file, the
  column and the data row."""

  def __init__(self, path: str, header: list[str], angle_unit: str):
    self.path, self.angle_unit = path, angle_unit
    self.index = {h: i for i, h in enumerate(header)}
    self.lo, self.hi = ANGLE_RANGE[angle_unit]

  def where(self, row_i: int, column: str) -> str:
    return f'{self.path}: column {column!r}, data row {row_i + 1} (line {row_i + 2})'

  def cell(self, row_i: int, row, column: str) -> str:
    i = self.index[column]
    return row[i] if i < len(row) else ''

  def number(self, row_i: int, row, column: str, integer: bool = False):
    text = self.cell(row_i, row, column)
    if is_empty(text):
      raise errors.DataError(f'{self.where(row_i, column)}: empty required field')
    try:
      value = float(text)
    except ValueError:
      raise errors.DataError(f'{self.where(row_i, column)}: not a number: {text!r}') from None
    if math.isnan(value):
      raise errors.DataError(f'{self.where(row_i, column)}: NaN in a required field')
    if integer:
      if not value.is_integer():
        raise errors.DataError(f'{self.where(row_i, column)}: expected an integer, got {text!r}')
      return int(value)
    return value

  def angle(self, row_i: int, row, column: str) -> float:
    value = self.number(row_i, row, column)
    if not self.lo - RANGE_SLACK <= value <= self.hi + RANGE_SLACK:
      hint = (" (values look like degrees: pass angle_unit='degrees')"
              if self.angle_unit == 'radians' and abs(value) <= 360 else '')
      raise errors.DataError(f'{self.where(row_i, column)}: angle {value} outside the '
                             f'{self.angle_unit} range {RANGE_TEXT[self.angle_unit]}{hint}')
    return value


def parse_rows(path: str, header: list[str], rows: list, angle_unit: str) -> dict:
  """Every data row parsed and checked: arrays set_size, cued (0-based), response, cue,
  report (NaN past a trial's set size, in the file's unit), subject, condition."""
  cells = Cells(path, header, angle_unit)
  index, item_cols = cells.index, item_columns(header)
  width_cols = max(item_cols['cue'] + item_cols['report'] + [0])
  n_rows = len(rows)
  out = dict(set_size=np.zeros(n_rows, np.int64), cued=np.zeros(n_rows, np.int64),
             response=np.zeros(n_rows), cue=np.full((n_rows, max(width_cols, 1)), np.nan),
             report=np.full((n_rows, max(width_cols, 1)), np.nan),
             subject=np.full(n_rows, '', object), condition=np.full(n_rows, '', object))
  for r, row in enumerate(rows):
    if len(row) > len(header) and any(not is_empty(c) for c in row[len(header):]):
      raise errors.DataError(f'{path}: data row {r + 1} (line {r + 2}) has {len(row)} fields, '
                             f'the header {len(header)}')
    n = cells.number(r, row, 'set_size', integer=True)
    if n < 1:
      raise errors.DataError(f'{cells.where(r, "set_size")}: set size must be >= 1, got {n}')
    for prefix in ('cue', 'report'):
      absent = [j for j in range(1, n + 1) if f'{prefix}_{j}' not in index]
      if absent:
        raise errors.DataError(f'{path}: missing column {prefix}_{absent[0]} needed by data '
                               f'row {r + 1} (line {r + 2}), whose set_size is {n}')
    k = cells.number(r, row, 'cued', integer=True)
    if not 1 <= k <= n:
      raise errors.DataError(
          f'{cells.where(r, "cued")}: cued item {k} out of range 1..{n} (set_size {n}); '
          'cued is 1-based: 1 names the item in cue_1/report_1'
          + (' (a 0-based file: add 1 to the column)' if k == 0 else ''))
    out['response'][r] = cells.angle(r, row, 'response')
    for prefix in ('cue', 'report'):
      for j in range(1, n + 1):
        out[prefix][r, j - 1] = cells.angle(r, row, f'{prefix}_{j}')
      for j in item_cols[prefix]:
        if j > n and not is_empty(cells.cell(r, row, f'{prefix}_{j}')):
          raise errors.DataError(f'{cells.where(r, f"{prefix}_{j}")}: set_size is {n} but item '
                                 f'{j} is given (cells past the set size must be empty)')
    out['set_size'][r], out['cued'][r] = n, k - 1
    for name in ('subject', 'condition'):
      if name in index:
        out[name][r] = cells.cell(r, row, name).strip()
  return out
