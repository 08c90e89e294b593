"""Files: one way to write a workdir's files, on disk and in a bucket alike (etils.epath).

- Figures: `save_figure`, PNG (or the format the extension names) at FIGURE_DPI.
- CSVs: `write_csv`, a header and one row a record; floats at full precision (the shortest
  text that reads back the same double), NaN as 'NaN'.
- JSON lines: `read_jsonl` drops a torn line (a write cut short by a kill) with a warning;
  `append_jsonl`, `write_jsonl_atomic`.
- `write_text_atomic`: locally a replace of a temporary file, on an object store one object
  write (atomic by itself), so that a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from typing import Iterable, Sequence

from absl import logging
from etils import epath
import numpy as np

from rnn_behaviour import workdir as workdir_lib

FIGURE_DPI = 110


def save_figure(fig, path, dpi: int = FIGURE_DPI) -> str:
  """Writes `fig` to `path` (format from the extension, PNG without), creating its folder;
  returns the path as a string."""
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  with target.open('wb') as f:
    fig.savefig(f, format=target.suffix[1:] or 'png', dpi=dpi)
  return os.fspath(path)


def csv_cell(value):
  """The text of one CSV cell: NaN as 'NaN', floats at full precision, the rest as they are."""
  if isinstance(value, (float, np.floating)):
    return 'NaN' if math.isnan(value) else repr(float(value))
  return value


def csv_text(columns: Sequence[str], rows: Iterable) -> str:
  """CSV text with a header: rows are dicts keyed by `columns`, or sequences in their order."""
  text = io.StringIO(newline='')      # epath's cloud files take no newline=: built here.
  writer = csv.writer(text)
  writer.writerow(columns)
  for row in rows:
    values = [row.get(c, '') for c in columns] if isinstance(row, dict) else row
    writer.writerow([csv_cell(v) for v in values])
  return text.getvalue()


def write_csv(path, columns: Sequence[str], rows: Iterable, atomic: bool = False) -> str:
  """Writes `csv_text(columns, rows)` to `path` (atomically with `atomic`); returns the path."""
  text = csv_text(columns, rows)
  if atomic:
    write_text_atomic(path, text)
  else:
    epath.Path(path).write_text(text)
  return os.fspath(path)


def write_text_atomic(path, text: str) -> None:
  """Never a half-written file, even if the process dies here: locally a replace of a
  temporary file; on an object store (gs://...) one object write, atomic by itself."""
  if not workdir_lib.is_local(path):
    epath.Path(path).write_text(text)
    return
  tmp = os.fspath(path) + '.tmp'
  epath.Path(tmp).write_text(text)
  os.replace(tmp, path)


def read_jsonl(path) -> list[dict]:
  """The records of a JSON-lines file ([] if missing); unparsable lines are dropped, warned."""
  path = epath.Path(path)
  if not path.exists():
    return []
  records = []
  lines = path.read_text().splitlines(keepends=True)
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except ValueError:
      record = None
    if not isinstance(record, dict):
      where = 'the last line' if number == len(lines) else f'line {number}'
      logging.warning('%s: %s is not a JSON record (torn by an interrupted write?) and is '
                      'dropped: %.80r', path, where, line)
      continue
    records.append(record)
  return records


def write_jsonl_atomic(path, records: list[dict]) -> None:
  """Replaces `path` by `records`, one JSON line each, so that a kill leaves old or new."""
  if not workdir_lib.is_local(path):
    epath.Path(path).write_text(''.join(json.dumps(r) + '\n' for r in records))
    return
  directory = os.path.dirname(os.path.abspath(path))
  fd, temporary = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path))
  try:
    with os.fdopen(fd, 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in records)
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def append_jsonl(path, record: dict, sort_keys: bool = True) -> None:
  """Appends one JSON line to `path` (created if missing); on object stores, by rewriting."""
  line = json.dumps(record, sort_keys=sort_keys) + '\n'
  if not workdir_lib.is_local(path):
    path = epath.Path(path)
    path.write_text((path.read_text() if path.exists() else '') + line)
    return
  with open(path, 'a') as f:
    f.write(line)
