"""A peer process that dies does not hang the job (issue 18, item 5).

Fast: how a dead peer is recognised in the runtime's errors, the timeouts handed to
jax.distributed, and main()'s one line and exit code. Slow: two local processes of
`python -m rnn_behaviour.main`, process 1 killed with SIGKILL while they train; process 0 must
stop promptly with exit code 3 and one line, and a rerun of both resumes from the last
checkpoint.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from rnn_behaviour import parallel
from tests import conftest
from tests import tiny

GLOO_RESET = ('UNKNOWN: Gloo all-reduce failed: [external/gloo/gloo/transport/tcp/pair.cc:538] '
              'Read error [127.0.0.1]:1413: Connection reset by peer')
HEARTBEAT = ('INTERNAL: Barrier failed because: task is set to ERROR: UNAVAILABLE: Task 1 '
             'heartbeat timeout. This indicates that the remote task has failed\n\nRPC: '
             '/xla.coordination.CoordinationService/Barrier')


class JaxRuntimeError(RuntimeError):
  """Stands for jax.errors.JaxRuntimeError (matched by message, not by class)."""


def test_peer_failures_are_recognised_through_the_exception_chain():
  assert parallel.peer_failure(JaxRuntimeError(GLOO_RESET)) == GLOO_RESET
  assert parallel.peer_failure(JaxRuntimeError(
      'UNKNOWN: Gloo AllGather failed: [pair.cc:547] Connection closed by peer [127.0.0.1]:1'))
  assert parallel.peer_failure(JaxRuntimeError(HEARTBEAT)).startswith(
      'INTERNAL: Barrier failed because: task is set to ERROR')
  # Raised while handling the step's error (a checkpoint barrier in a finally block).
  try:
    try:
      raise JaxRuntimeError(GLOO_RESET)
    finally:
      raise ValueError('wait_until_finished: the save failed')
  except ValueError as error:
    assert parallel.peer_failure(error) == GLOO_RESET
  for other in (ValueError('the checkpoint at step 4 does not fit this config'),
                FloatingPointError('non-finite training metrics at step 3'),
                KeyError('reset'), None):
    assert parallel.peer_failure(other) is None


def test_the_survivors_line_says_what_to_do(tmp_path, monkeypatch):
  monkeypatch.setattr(parallel.jax, 'process_index', lambda: 0)
  monkeypatch.setattr(parallel.jax, 'process_count', lambda: 2)
  (tmp_path / 'checkpoints' / '186').mkdir(parents=True)
  (tmp_path / 'checkpoints' / '187.orbax-checkpoint-tmp').mkdir()
  line = parallel.peer_lost_message(GLOO_RESET, str(tmp_path))
  assert '\n' not in line
  assert line.startswith('process 0 of 2: another process of the job died or became '
                         'unreachable')
  assert 'Connection reset by peer' in line
  assert f'rerun the same command on every process: it resumes from the last checkpoint ' \
         f'(step 186) in {tmp_path}' in line


def test_jax_distributed_gets_a_short_heartbeat_and_recoverability(monkeypatch):
  calls = []
  monkeypatch.setattr(parallel.jax.distributed, 'initialize',
                      lambda **kwargs: calls.append(kwargs))
  updates = []
  monkeypatch.setattr(parallel.jax.config, 'update', lambda k, v: updates.append((k, v)))
  parallel.initialize_distributed('localhost:1234', 2, 0, heartbeat_timeout=7)
  assert calls == [dict(coordinator_address='localhost:1234', num_processes=2, process_id=0,
                        heartbeat_timeout_seconds=7,
                        shutdown_timeout_seconds=parallel.SHUTDOWN_TIMEOUT_S)]
  assert ('jax_enable_recoverability', True) in updates
  calls.clear()
  parallel.initialize_distributed('localhost:1234', 2, 0)
  assert calls[0]['heartbeat_timeout_seconds'] == parallel.HEARTBEAT_TIMEOUT_S < 100
  with pytest.raises(ValueError, match='heartbeat timeout must be a positive'):
    parallel.initialize_distributed('localhost:1234', 2, 0, heartbeat_timeout=0)


def test_main_stops_at_once_with_one_line_when_a_peer_dies(tmp_path, monkeypatch, capsys):
  """main()'s path for a dead peer in this process: the error a step raises, then exit 3."""
  from rnn_behaviour import main  # pylint: disable=g-import-not-at-top

  def step_fails(*args, **kwargs):
    try:
      raise JaxRuntimeError(GLOO_RESET)
    finally:
      raise JaxRuntimeError(HEARTBEAT)

  exits = []

  class Exited(BaseException):
    pass

  def exit_now(code):
    exits.append(code)
    raise Exited

  monkeypatch.setattr(main.modes, 'run', step_fails)
  monkeypatch.setattr(main.parallel, 'initialize_distributed', lambda *a, **k: None)
  monkeypatch.setattr(main.jax, 'process_count', lambda: 2)
  monkeypatch.setattr(main.os, '_exit', exit_now)
  (tmp_path / 'run' / 'checkpoints' / '6').mkdir(parents=True)
  argv = ['main', '--config=' + os.path.join(conftest.REPO_ROOT, 'rnn_behaviour', 'configs',
                                             'default.py'), f'--workdir={tmp_path / "run"}']
  monkeypatch.setattr(sys, 'argv', argv)
  main.parse_flags(argv)
  try:
    with pytest.raises(Exited):
      main.main(['main'])
  finally:
    main.FLAGS.unparse_flags()
  assert exits == [parallel.PEER_LOST_EXIT_CODE] == [3]
  (line,) = capsys.readouterr().err.splitlines()
  assert line.startswith('error: process ') and 'Connection reset by peer' in line
  assert '(step 6)' in line


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _start_job(workdir, num_steps: int, log_prefix):
  """Two processes of main.py training the tiny config on one CPU device each."""
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=conftest.REPO_ROOT)
  env.pop('XLA_FLAGS', None)
  config = ['--config=' + tiny.CONFIG_PATH]
  processes = []
  for i in range(2):
    log = open(f'{log_prefix}.{i}.txt', 'w')  # pylint: disable=consider-using-with
    command = [sys.executable, '-m', 'rnn_behaviour.main', *config, f'--workdir={workdir}',
               '--mode=train', f'--config.train.num_steps={num_steps}',
               '--config.train.decay_steps=100000', '--config.train.checkpoint_every=1',
               '--config.eval.bns_svi_steps=0', '--config.parallel.num_devices=0',
               '--cpu_devices=1',
               f'--coordinator_address=localhost:{port}', '--num_processes=2',
               f'--process_id={i}']
    processes.append(subprocess.Popen(command, cwd=conftest.REPO_ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT))
  return processes


def _steps(workdir):
  folder = os.path.join(workdir, 'checkpoints')
  return sorted(int(s) for s in os.listdir(folder) if s.isdigit()) if os.path.isdir(
      folder) else []


@pytest.mark.slow
def test_killing_process_1_stops_process_0_promptly_and_a_rerun_resumes(tmp_path):
  workdir = str(tmp_path / 'run')
  logs = str(tmp_path / 'job')
  first = _start_job(workdir, 100000, logs)
  try:
    deadline = time.time() + 600
    while len(_steps(workdir)) < 3 and time.time() < deadline:   # Training, checkpointing.
      assert all(p.poll() is None for p in first), open(f'{logs}.0.txt').read()[-3000:]
      time.sleep(1)
    assert len(_steps(workdir)) >= 3, 'no checkpoints within 10 minutes'
    first[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    code = first[0].wait(timeout=120)
    waited = time.time() - killed_at
  finally:
    for p in first:
      if p.poll() is None:
        p.kill()
  log = open(f'{logs}.0.txt').read()
  assert code == parallel.PEER_LOST_EXIT_CODE, log[-3000:]
  assert waited < 30, f'process 0 took {waited:.0f} s to stop'
  error_lines = [l for l in log.splitlines() if l.startswith('error: ')]
  assert len(error_lines) == 1 and 'another process of the job died' in error_lines[0]
  assert 'Fatal Python error' not in log and 'Traceback' not in log
  last = max(_steps(workdir))
  assert f'(step {last})' in error_lines[0]

  # The rerun resumes from the last checkpoint, which both processes wrote whole.
  second = _start_job(workdir, last + 2, str(tmp_path / 'rerun'))
  codes = [p.wait(timeout=900) for p in second]
  rerun = open(str(tmp_path / 'rerun') + '.0.txt').read()
  assert codes == [0, 0], rerun[-3000:]
  assert re.search(rf'Resumed from checkpoint at step {last}\b', rerun), rerun[-3000:]
  assert max(_steps(workdir)) == last + 2


@pytest.mark.parametrize('error,closes', [(JaxRuntimeError(GLOO_RESET), False),
                                          (FloatingPointError('a bug'), True)])
def test_the_training_loop_does_not_wait_for_a_dead_peer(tiny_config, tmp_path, monkeypatch,
                                                         error, closes):
  """Closing the checkpoint manager waits at a barrier for every process: skipped when the
  step failed because a peer is gone, done for any other error."""
  from rnn_behaviour import checkpoints  # pylint: disable=g-import-not-at-top
  from rnn_behaviour import train  # pylint: disable=g-import-not-at-top
  from rnn_behaviour import train_step  # pylint: disable=g-import-not-at-top
  managers, closed = [], []
  real = checkpoints.checkpoint_manager

  def manager(*args, **kwargs):
    m = real(*args, **kwargs)
    managers.append((m, m.close))
    m.close = lambda: closed.append(True)
    return m

  def step_fn(built, seeds):
    def step(state):
      raise error
    return step

  monkeypatch.setattr(checkpoints, 'checkpoint_manager', manager)
  monkeypatch.setattr(train_step, 'train_step_fn', step_fn)
  with pytest.raises(type(error)):
    train.train(tiny_config, str(tmp_path / 'run'))
  assert closed == ([True] if closes else [])
  for _, close in managers:
    close()
