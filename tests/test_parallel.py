"""Data parallel over devices and processes: any layout computes the same numbers.

The tests run in subprocesses because the number of CPU devices is fixed when JAX starts:
`parallel_worker.py` trains a tiny config for a few steps on each layout it is given and prints
the metrics and the final parameters' norm as JSON.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from rnn_behaviour import config_validation
from rnn_behaviour import parallel
from tests import conftest

WORKER = os.path.join(os.path.dirname(__file__), 'parallel_worker.py')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_worker(workdir, runs: list, cpu_devices: int, processes: int = 1) -> dict:
  """Runs the worker (in `processes` processes); returns process 0's results by run name."""
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  args = [sys.executable, WORKER, f'--workdir={workdir}', f'--cpu_devices={cpu_devices}',
          f'--runs={json.dumps(runs)}']
  if processes == 1:
    commands = [args]
  else:
    with socket.socket() as s:
      s.bind(('localhost', 0))
      port = s.getsockname()[1]
    commands = [args + [f'--coordinator_address=localhost:{port}',
                        f'--num_processes={processes}', f'--process_id={i}']
                for i in range(processes)]
  started = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in commands]
  outputs = [run.communicate(timeout=900) for run in started]
  for run, (_, err) in zip(started, outputs):
    assert run.returncode == 0, err[-3000:]
  lines = [l for l in outputs[0][0].splitlines() if l.startswith('{')]
  return json.loads(lines[-1])


def _assert_same(a: dict, b: dict, rtol=2e-4):
  assert [r['step'] for r in a['metrics']] == [r['step'] for r in b['metrics']]
  for ra, rb in zip(a['metrics'], b['metrics']):
    for name in ('loss', 'denoise', 'grad_norm'):
      np.testing.assert_allclose(ra[name], rb[name], rtol=rtol, err_msg=name)
  np.testing.assert_allclose(a['param_norm'], b['param_norm'], rtol=rtol)


BATCH = {'train.displays_per_batch': 8, 'train.num_steps': 4, 'train.decay_steps': 4}


# The subprocess tests below are slow (a new process of 8 devices, two processes of 4, ~2 min
# each on 2 cores); tests/test_end_to_end_fast.py runs the sharded step in this process on a
# one-device mesh.
@pytest.fixture(scope='module')
def one_host(tmp_path_factory) -> dict:
  """Runs on one process of 8 CPU devices, by name."""
  runs = [[f'plain{d}', dict(BATCH, **{'parallel.num_devices': d})] for d in (1, 2, 8)]
  runs += [[f'chunked{d}', dict(BATCH, **{'parallel.num_devices': d,
                                          'train.displays_per_chunk': 2})] for d in (1, 2)]
  runs += [['ensemble', dict(BATCH, **{'train.ensemble_size': 2, 'parallel.num_devices': 4,
                                       'parallel.member_shards': 2})],
           # Steps 1-2 on 2 devices, then 3-4 resumed on 4.
           ['moved', dict(BATCH, **{'parallel.num_devices': 2, 'train.num_steps': 2})],
           ['moved', dict(BATCH, **{'parallel.num_devices': 4})]]
  return _run_worker(str(tmp_path_factory.mktemp('one_host')), runs, 8)


@pytest.mark.slow
def test_one_two_and_eight_devices_compute_the_same(one_host):
  assert [one_host[f'plain{d}']['mesh'] for d in (1, 2, 8)] == [
      None, {'members': 1, 'displays': 2}, {'members': 1, 'displays': 8}]
  for d in (2, 8):
    _assert_same(one_host['plain1'], one_host[f'plain{d}'])


@pytest.mark.slow
def test_gradient_chunks_stay_whole_and_compute_the_same(one_host):
  # 4 chunks of 2 displays: one device scans all four, two devices two each.
  _assert_same(one_host['chunked1'], one_host['chunked2'])


@pytest.mark.slow
def test_an_ensemble_split_by_member_matches_standalone_runs(one_host):
  """Member 0 (seed 0) on a (2 members x 2 displays) mesh equals the one-device run."""
  assert one_host['ensemble']['mesh'] == {'members': 2, 'displays': 2}
  member0 = [r for r in one_host['ensemble']['metrics'] if r['member'] == 0]
  _assert_same(dict(one_host['plain1'], param_norm=0.0), dict(metrics=member0, param_norm=0.0))


@pytest.mark.slow
def test_a_run_resumes_on_another_device_count(one_host):
  assert one_host['moved']['resumed_from'] == 2
  _assert_same(one_host['plain1'], one_host['moved'])


@pytest.mark.slow
def test_two_processes_of_four_devices_equal_one_of_eight(one_host, tmp_path):
  runs = [['run', dict(BATCH, **{'parallel.num_devices': 0})]]
  multi = _run_worker(str(tmp_path), runs, 4, processes=2)['run']
  assert multi['devices'] == 8 and multi['processes'] == 2
  assert multi['mesh'] == {'members': 1, 'displays': 8}
  _assert_same(one_host['plain8'], multi)
  # Process 0 wrote the run's files; the processes wrote the checkpoints together.
  assert os.path.exists(tmp_path / 'run' / 'config.json')
  assert os.path.isdir(tmp_path / 'run' / 'checkpoints' / '4')


def test_bad_layouts_fail_naming_the_field():
  config = conftest.make_tiny_config()
  config.parallel.num_devices = 3
  with pytest.raises(ValueError, match='displays_per_batch=4 must be a multiple'):
    config_validation.validate(config)
  config.parallel.num_devices = 2
  config.parallel.member_shards = 2
  with pytest.raises(ValueError, match='member_shards=2 must divide config.train.ensemble_size'):
    config_validation.validate(config)
  config.parallel.member_shards = 1
  config.train.displays_per_chunk = 4
  with pytest.raises(ValueError, match='chunks must be a multiple of the display shards'):
    config_validation.validate(config)
  config.train.displays_per_chunk = 0
  config.parallel.num_devices = -1
  with pytest.raises(ValueError, match='config.parallel.num_devices must be an integer >= 0'):
    config_validation.validate(config)
  config.parallel.num_devices = 64
  with pytest.raises(ValueError, match='only 1 devices are visible|only \\d+ devices'):
    parallel.make_mesh(config)
