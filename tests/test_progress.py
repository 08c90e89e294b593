"""Progress reports: throttled, the first (compiling) step left out of the rate, visible
without absl's handler; and the metric writer's JSON lines and TensorBoard events."""

import json

import numpy as np
import pytest

from rnn_behaviour import files
from rnn_behaviour import metric_writers
from rnn_behaviour import progress


class FakeClock:

  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def test_rate_and_eta_leave_out_the_first_step():
  clock = FakeClock()
  reporter = progress.ProgressReporter(101, 'training', every_s=5.0, clock=clock,
                                       display='log')
  clock.now += 30.0                       # The first step compiles for 30 s ...
  first = reporter.update(1)
  assert 'compiling' in first and 'ETA ?' in first
  reported = [first]
  for step in range(2, 102):              # ... then 8 steps a second.
    clock.now += 0.125
    line = reporter.update(step, loss=0.25)
    if line:
      reported.append(line)
  assert reporter.rate() == 8.0
  # Throttled: the first, one every 5 s of the 12.5 s after it, and one on reaching total.
  assert len(reported) == 4
  assert reported[1] == ('training: 41/101 steps (41%), 8 steps/s, elapsed 35.0s, ETA 7.5s, '
                         'loss 0.25')
  assert reported[2].startswith('training: 81/101 steps')
  assert reported[3].startswith('training: 101/101 steps (100%)')
  final = reporter.close()
  assert final == 'training: 101/101 steps in 42.5s (8 steps/s after the first)'


def test_resumed_run_counts_from_its_start_step():
  clock = FakeClock()
  reporter = progress.ProgressReporter(1000, 'training', start=900, every_s=0.0, clock=clock,
                                       display='log')
  reporter.update(901)
  clock.now += 9.9
  line = reporter.update(1000)
  assert '1000/1000 steps (100%)' in line and '10 steps/s' in line and 'ETA 0.0s' in line


def test_lines_show_where_absl_info_is_hidden(capsys):
  # Under pytest, as in a notebook, absl has no handler for INFO lines.
  assert not progress.absl_info_shown()
  stages = progress.Stages('evaluate', ['sample', 'fit'])
  with stages.stage('fit'):
    pass
  err = capsys.readouterr().err
  assert '[2/2] evaluate: fit ...' in err and '[2/2] evaluate: fit done in' in err
  with pytest.raises(ValueError, match='unknown stage'):
    with stages.stage('plot'):
      pass


def test_bar_draws_where_absl_info_is_hidden(capsys):
  clock = FakeClock()
  with progress.ProgressReporter(4, 'sampling', unit='chunk', every_s=0.0, clock=clock) as r:
    for i in range(1, 5):
      clock.now += 1.0
      r.update(i)
  err = capsys.readouterr().err
  assert 'sampling: 100%' in err and '4/4' in err and '1 chunks/s' in err


@pytest.mark.parametrize('seconds, text', [(4.24, '4.2s'), (185, '3m05s'), (3725, '1h02m'),
                                           (None, '?'), (float('inf'), '?')])
def test_format_duration(seconds, text):
  assert progress.format_duration(seconds) == text


def test_metric_writer_writes_json_lines_and_tensorboard_events(tmp_path):
  workdir = str(tmp_path / 'run')
  with metric_writers.MetricWriter(workdir) as writer:
    for step in (1, 2, 3):
      writer.write_scalars(step, {'loss': np.float32(1.0 / step), 'steps_per_s': 20.0 + step})
  records = files.read_jsonl(f'{workdir}/{metric_writers.JSONL_FILE}')
  assert [r['step'] for r in records] == [1, 2, 3]
  assert records[2]['loss'] == pytest.approx(1 / 3)
  events = metric_writers.read_event_scalars(workdir)
  assert set(events) == {'loss', 'steps_per_s'}
  assert [s for s, _ in events['loss']] == [1, 2, 3]
  np.testing.assert_allclose([v for _, v in events['loss']], [1.0, 0.5, 1 / 3], rtol=1e-6)
  assert events['steps_per_s'][-1] == (3, 23.0)
  with pytest.raises(ValueError, match='not a scalar'):
    metric_writers.MetricWriter(workdir, tensorboard=False).write_scalars(4, {'x': [1.0, 2.0]})
  with open(f'{workdir}/{metric_writers.JSONL_FILE}') as f:
    assert len([json.loads(line) for line in f]) == 3     # The failed write wrote nothing.
