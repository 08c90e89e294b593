"""Workdir files on a cloud path (gs://) go through etils.epath, object-store rules included.

A real bucket is out of reach here, so epath's own test hook maps `gs://` onto a local folder;
the code under test still takes its cloud branches (no exclusive create, no append, no
atomic rename), which `workdir.is_local` selects from the path's scheme. Orbax's checkpoints
and tensorboardX's events on gs:// use their own GCS clients and are not covered.
"""

import json

from etils import epath
from etils.epath import testing as epath_testing
import pytest

from rnn_behaviour import metric_writers
from rnn_behaviour import train
from rnn_behaviour import workdir as workdir_lib
from tests import conftest

RUN = 'gs://bucket/runs/one'


@pytest.fixture
def bucket(tmp_path):
  """gs://... served from tmp_path/gs/... for the duration of a test."""
  root = str(tmp_path / 'gs')

  def local(path):
    return str(path).replace('gs://', root + '/', 1)

  def remote(path):
    return str(path).replace(root + '/', 'gs://', 1)

  def one(fn, path, *args, **kwargs):
    return fn(local(path), *args, **kwargs)

  def two(fn, path, dst, *args, **kwargs):
    return fn(local(path), local(dst), *args, **kwargs)

  def glob(fn, pattern):
    return [remote(p) for p in fn(local(pattern))]

  mocks = dict(open=one, exists=one, isdir=one, listdir=one, makedirs=one, mkdir=one,
               remove=one, rmtree=one, stat=one, rename=two, replace=two, copy=two, glob=glob)
  with epath_testing.mock_epath(**mocks):
    yield tmp_path / 'gs'


def test_cloud_paths_are_recognised():
  assert not workdir_lib.is_local('gs://bucket/run')
  assert not workdir_lib.is_local(epath.Path('s3://bucket/run'))
  assert workdir_lib.is_local('/tmp/run') and workdir_lib.is_local('runs/one')


def test_a_cloud_workdir_is_checked_locked_and_written(bucket):
  workdir_lib.check(RUN)                       # Not there yet: fine, it is created on write.
  with pytest.raises(workdir_lib.WorkdirError, match='does not exist'):
    workdir_lib.check(RUN, needs_checkpoint=True)
  with workdir_lib.lock(RUN) as lock_path:
    assert lock_path == f'{RUN}/{workdir_lib.LOCK_FILE}'
    assert (bucket / 'bucket/runs/one/train.lock').exists()
    with pytest.raises(workdir_lib.WorkdirLocked, match='is being trained by'):
      workdir_lib.acquire(RUN)
  assert not (bucket / 'bucket/runs/one/train.lock').exists()
  workdir_lib.check(RUN)

  metrics = f'{RUN}/metrics.jsonl'
  for step in (1, 2, 3):
    workdir_lib.append_jsonl(metrics, {'step': step, 'loss': 1.0 / step})
  assert [r['step'] for r in workdir_lib.read_jsonl(metrics)] == [1, 2, 3]
  workdir_lib.write_jsonl_atomic(metrics, [{'step': 1}])
  assert workdir_lib.read_jsonl(metrics) == [{'step': 1}]


def test_a_runs_records_live_in_the_bucket(bucket):
  config = conftest.make_tiny_config()
  train.save_config(config, RUN, {'initialised_from': {'workdir': 'x'}})
  saved = json.loads((bucket / 'bucket/runs/one/config.json').read_text())
  assert saved['train']['num_steps'] == config.train.num_steps
  assert train.load_run_config(RUN).train.num_steps == config.train.num_steps
  train.record_history(config, RUN, 'start', 0)
  train.record_history(config, RUN, 'resume', 2)
  history = workdir_lib.read_jsonl(f'{RUN}/{train.HISTORY_FILE}')
  assert [h['event'] for h in history] == ['recorded from config.json', 'start', 'resume']

  with metric_writers.MetricWriter(RUN, tensorboard=False) as writer:
    writer.write_scalars(1, {'loss': 0.5})
    writer.write_scalars(2, {'loss': 0.25})
  assert [r['loss'] for r in train.read_metrics(RUN)] == [0.5, 0.25]

  moved = train.supersede(RUN)
  assert moved.startswith(f'{RUN}/{train.SUPERSEDED_DIR}/')
  assert not (bucket / 'bucket/runs/one/metrics.jsonl').exists()
  assert train.read_metrics(moved) == [{'step': 1, 'loss': 0.5}, {'step': 2, 'loss': 0.25}]
  assert (bucket / moved.replace('gs://', '') / 'config.json').exists()
