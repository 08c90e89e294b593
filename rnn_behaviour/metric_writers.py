"""Scalar metrics where the ecosystem looks for them: JSON lines and TensorBoard event files.

  with metric_writers.MetricWriter(workdir, resume_step=start) as writer:
    writer.write_scalars(step, {'loss': loss, 'steps_per_s': rate})

appends `{"step": step, "loss": ..., ...}` to `<workdir>/metrics.jsonl` (the format
`train.read_metrics` reads) and writes the same scalars to a TensorBoard event file in
`<workdir>` (`tensorboard --logdir=runs/` then shows every run side by side).

The event files are written with tensorboardX (pure Python; its only dependencies, NumPy,
protobuf and packaging, are installed with the package already; about 0.7 MB): CLU's
`metric_writers` would write them through TensorFlow's summary ops, which this project does not
depend on. `read_event_scalars` reads them back without TensorFlow or TensorBoard.

Paths go through etils `epath`; on a `gs://` workdir tensorboardX writes its events through
google-cloud-storage (the package's `gcs` extra installs both).
"""

from __future__ import annotations

import os
import struct
from typing import Mapping

from etils import epath
import jax
import numpy as np

from rnn_behaviour import files

JSONL_FILE = 'metrics.jsonl'


def _is_chief() -> bool:
  """Only the first process writes metrics (ARCHITECTURE: hosts are processes)."""
  return jax.process_index() == 0


def _as_float(name: str, value) -> float:
  array = np.asarray(value)
  if array.size != 1:
    raise ValueError(f'metric {name!r} is not a scalar: shape {array.shape}')
  return float(array.reshape(()))


class MetricWriter:
  """Writes scalars to `<workdir>/<jsonl_name>` and to TensorBoard event files in `workdir`.

  Args:
    workdir: the run's directory (created if missing).
    jsonl_name: the JSON-lines file, relative to `workdir`.
    tensorboard: write event files too.
    resume_step: the step a resumed run restarts from; TensorBoard then hides the events a
      previous attempt wrote past it (tensorboardX's `purge_step`), as `train` truncates the
      JSON lines.
  """

  def __init__(self, workdir: str, *, jsonl_name: str = JSONL_FILE, tensorboard: bool = True,
               resume_step: int | None = None):
    self.workdir = workdir
    self.jsonl_path = os.fspath(epath.Path(workdir) / jsonl_name)
    self._active = _is_chief()
    self._tb = None
    if not self._active:
      return
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    if tensorboard:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._tb = tensorboardX.SummaryWriter(logdir=workdir, purge_step=resume_step or None,
                                            flush_secs=30)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> dict:
    """Writes one record of scalars at `step`; returns it (`{'step': step, name: float}`)."""
    record = {'step': int(step), **{k: _as_float(k, v) for k, v in scalars.items()}}
    if not self._active:
      return record
    files.append_jsonl(self.jsonl_path, record, sort_keys=False)
    if self._tb is not None:
      for name, value in record.items():
        if name != 'step':
          self._tb.add_scalar(name, value, global_step=record['step'])
    return record

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _records(path: str):
  """The payloads of a TFRecord file: [length u64][crc u32][data][crc u32] each."""
  with epath.Path(path).open('rb') as f:
    while header := f.read(12):
      if len(header) < 12:
        raise ValueError(f'{path}: truncated record header')
      (length,) = struct.unpack('<Q', header[:8])
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:
        raise ValueError(f'{path}: truncated record')
      yield data


def read_event_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
  """Scalars in TensorBoard event files: {tag: [(step, value), ...]} in file order.

  Args:
    path: an event file, or a directory whose `events.out.tfevents.*` files are read in name
      (that is, creation-time) order.
  """
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  path = epath.Path(path)
  files = sorted(path.glob('events.out.tfevents.*')) if path.is_dir() else [path]
  scalars: dict[str, list[tuple[int, float]]] = {}
  for name in files:
    for data in _records(name):
      event = event_pb2.Event.FromString(data)
      for value in event.summary.value:
        if value.HasField('simple_value'):
          number = value.simple_value
        elif value.HasField('tensor') and value.tensor.float_val:
          number = value.tensor.float_val[0]
        else:
          continue
        scalars.setdefault(value.tag, []).append((int(event.step), float(number)))
  return scalars
