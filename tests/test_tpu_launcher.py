"""experiments/tpu/launch.py: the commands it would run (dry run), its retry after a
preemption (gcloud faked), and its worker command run here on a tiny config, twice (resume)."""

import importlib.util
import json
import os
import shlex
import subprocess
import sys

import pytest

from rnn_behaviour import workdir as workdir_lib
from tests import conftest
from tests import tiny
from tests.tiny import compilation_cache  # pylint: disable=unused-import  (a fixture)

LAUNCHER = os.path.join(conftest.REPO_ROOT, 'experiments', 'tpu', 'launch.py')
_spec = importlib.util.spec_from_file_location('tpu_launch', LAUNCHER)
launch = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = launch          # dataclasses look the module up while it loads.
_spec.loader.exec_module(launch)

CONFIG = 'rnn_behaviour/configs/default.py'
TINY_CONFIG = 'rnn_behaviour/configs/tiny.py'
WORKDIR = 'gs://my-bucket/runs/default'


def _opts(**kwargs):
  values = dict(name='rnn-v4', zone='us-central2-b', accelerator_type='v4-32', config=CONFIG,
                workdir=WORKDIR, config_overrides=('train.num_steps=100',),
                repo=conftest.REPO_ROOT)
  values.update(kwargs)
  return launch.Options(**values)


def _launcher(*args):
  return subprocess.run([sys.executable, LAUNCHER, *args], cwd=conftest.REPO_ROOT,
                        capture_output=True, text=True, timeout=60, check=False)


def _commands(text):
  return [line for line in text.splitlines() if line and not line.startswith('#')]


def test_dry_run_prints_every_command_in_order():
  result = _launcher('--name=rnn-v4', '--zone=us-central2-b', '--accelerator_type=v4-32',
                     f'--config={CONFIG}', f'--workdir={WORKDIR}', '--spot',
                     '--config_overrides=train.num_steps=100', '--delete_after', '--dry_run')
  assert result.returncode == 0, result.stderr
  commands = _commands(result.stdout)

  def where(text):
    return [i for i, c in enumerate(commands) if text in c]

  creates, installs = where('tpu-vm create'), where('uv pip install')
  runs, deletes = where('-m rnn_behaviour.main'), where('tpu-vm delete')
  # One simulated preemption: created, installed and run twice; deleted once for the retry
  # and once at the end (--delete_after).
  assert (len(creates), len(installs), len(runs), len(deletes)) == (2, 2, 2, 2)
  assert creates[0] < installs[0] < runs[0] < deletes[0] < creates[1] < installs[1] < runs[1]
  assert deletes[1] == len(commands) - 1
  creates, installs = [commands[i] for i in creates], [commands[i] for i in installs]
  runs = [commands[i] for i in runs]
  for command in creates:
    assert '--accelerator-type=v4-32' in command and '--zone=us-central2-b' in command
    assert '--version=tpu-ubuntu2204-base' in command and '--spot' in command
  for command in installs + runs:
    assert '--worker=all' in command and '--zone=us-central2-b' in command
  run_script = shlex.split(runs[0])[-1]
  assert f'--config={CONFIG}' in run_script and f'--workdir={WORKDIR}' in run_script
  assert '--config.train.num_steps=100' in run_script
  assert '--coordinator_address' not in run_script   # Pods find each other by themselves.
  assert 'PREEMPTED' in result.stdout and 'retry 1 of 3' in result.stdout
  assert f'gcloud storage rm {WORKDIR}/train.lock' in commands
  # Every line is a shell command that splits back into the argv the launcher builds.
  assert shlex.split(runs[0]) == launch.run_commands(_opts(spot=True))[0]


def test_queued_resource_variant():
  opts = _opts(queued=True, spot=True, accelerator_type='v5litepod-16', zone='us-west4-a')
  (create,) = launch.create_commands(opts)
  assert create[:5] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create']
  assert 'rnn-v4-qr' in create and '--node-id=rnn-v4' in create
  assert '--accelerator-type=v5litepod-16' in create and '--spot' in create
  assert '--runtime-version=v2-alpha-tpuv5-lite' in create
  assert launch.status_command(opts)[3:6] == ['queued-resources', 'describe', 'rnn-v4-qr']
  assert '--format=value(state.state)' in launch.status_command(opts)
  (delete,) = launch.delete_commands(opts)
  assert 'queued-resources' in delete and '--force' in delete
  # The node of a queued resource is reached like any TPU VM.
  (run,) = launch.run_commands(opts)
  assert run[3:6] == ['tpu-vm', 'ssh', 'rnn-v4'] and '--worker=all' in run

  result = _launcher('--name=rnn-v5', '--zone=us-west4-a', '--accelerator_type=v5litepod-16',
                     '--queued', '--spot', f'--config={CONFIG}', f'--workdir={WORKDIR}',
                     '--project=my-project', '--dry_run')
  assert result.returncode == 0, result.stderr
  commands = _commands(result.stdout)
  assert sum('queued-resources create rnn-v5-qr' in c for c in commands) == 2
  assert sum('queued-resources delete rnn-v5-qr' in c for c in commands) == 1
  assert all('--project=my-project' in c for c in commands if c.startswith('gcloud compute'))
  assert 'SUSPENDED' in result.stdout


def test_workdir_must_be_in_a_bucket():
  result = _launcher('--name=rnn-v4', '--zone=us-central2-b', '--accelerator_type=v4-32',
                     f'--config={CONFIG}', '--workdir=runs/default', '--dry_run')
  assert result.returncode != 0
  assert '--workdir must be a gs:// path' in result.stderr
  assert 'gcloud' not in result.stdout
  with pytest.raises(ValueError, match='--workdir'):
    launch.validate(_opts(workdir='/tmp/run'))
  launch.validate(_opts(workdir='/tmp/run', allow_local_workdir=True))
  with pytest.raises(ValueError, match='--config_overrides'):
    launch.validate(_opts(config_overrides=('train.num_steps',)))
  with pytest.raises(ValueError, match='--config'):
    launch.validate(_opts(config='rnn_behaviour/configs/missing.py'))
  with pytest.raises(ValueError, match='--preemptible'):
    launch.validate(_opts(queued=True, preemptible=True))


class FakeGcloud:
  """Plays gcloud: the TPU exists and is READY, except right after the first run, which fails
  with the TPU PREEMPTED; records every command."""

  def __init__(self, opts):
    self.opts = opts
    self.commands = []
    self.runs = 0
    self.state = 'READY'

  def __call__(self, argv, capture=False):
    self.commands.append(list(argv))
    if argv == launch.status_command(self.opts):
      if self.state == 'NOT_FOUND':
        return launch.Result(1)
      return launch.Result(0, self.state + '\n')
    if argv in launch.delete_commands(self.opts):
      self.state = 'NOT_FOUND'
      return launch.Result(0)
    if argv in launch.create_commands(self.opts):
      self.state = 'READY'
    if argv in launch.run_commands(self.opts):
      self.runs += 1
      if self.runs == 1:
        self.state = 'PREEMPTED'
        return launch.Result(255)
    return launch.Result(0)


def test_preemption_recreates_the_tpu_and_reruns():
  opts = _opts(max_retries=2)
  fake = FakeGcloud(opts)
  said = []
  assert launch.launch(opts, runner=fake, sleep=lambda _: None, say=said.append) == 0
  (run,) = launch.run_commands(opts)
  assert fake.commands.count(run) == 2
  (delete,) = launch.delete_commands(opts)
  (create,) = launch.create_commands(opts)
  # The TPU was READY at first (not created); after the preemption: deleted, lock cleared,
  # created, reinstalled, rerun.
  first_run = fake.commands.index(run)
  assert create not in fake.commands[:first_run]
  after = fake.commands[first_run + 1:]
  assert after.index(delete) < after.index(create) < after.index(run)
  assert ['gcloud', 'storage', 'rm', f'{WORKDIR}/train.lock'] in after
  installs = [c for c in fake.commands if 'uv pip install' in c[-1]]
  assert len(installs) == 2
  assert any('PREEMPTED' in line and 'retry 1 of 2' in line for line in said)


def test_a_queued_request_is_awaited_and_a_suspended_one_replaced():
  opts = _opts(queued=True, spot=True)
  states = iter(['SUSPENDED', 'WAITING_FOR_RESOURCES', 'WAITING_FOR_RESOURCES',
                 'PROVISIONING', 'ACTIVE'])
  commands, slept, said = [], [], []

  def fake(argv, capture=False):
    commands.append(list(argv))
    if argv == launch.status_command(opts):
      return launch.Result(0, next(states))
    return launch.Result(0)

  assert launch.launch(opts, runner=fake, sleep=slept.append, say=said.append) == 0
  (delete,), (create,) = launch.delete_commands(opts), launch.create_commands(opts)
  assert commands.index(delete) < commands.index(create) < commands.index(
      launch.run_commands(opts)[0])
  assert slept == [60.0] * 3
  assert sum('waiting for rnn-v4' in line for line in said) == 2   # Each new state once.


def test_gives_up_after_max_retries():
  opts = _opts(max_retries=1, delete_after=True)

  def always_preempted(argv, capture=False):
    if argv == launch.status_command(opts):
      return launch.Result(0, 'PREEMPTED')
    return launch.Result(255 if argv in launch.run_commands(opts) else 0)

  said = []
  assert launch.launch(opts, runner=always_preempted, sleep=lambda _: None,
                       say=said.append) == 1
  assert any('giving up' in line for line in said)
  assert any('--delete_after' in line for line in said)


def test_a_rerun_stops_the_run_left_behind_and_nothing_else(tmp_path):
  """A dropped ssh session can leave its job running; the next script stops it (found by the
  pid file, checked to be the entry point) but never another process that reused the pid."""
  stop = launch._stop_previous_script()  # pylint: disable=protected-access
  env = dict(os.environ, HOME=str(tmp_path))
  pid_file = tmp_path / launch.REMOTE_PID
  left = subprocess.Popen(['bash', '-c', 'exec -a rnn_behaviour.main sleep 60'])
  other = subprocess.Popen(['sleep', '60'])
  try:
    pid_file.write_text(f'{other.pid}\n')
    subprocess.run(['bash', '-c', stop], env=env, check=True, timeout=30)
    assert other.poll() is None and not pid_file.exists()
    pid_file.write_text(f'{left.pid}\n')
    subprocess.run(['bash', '-c', stop], env=env, check=True, timeout=30)
    assert left.wait(timeout=10) != 0 and not pid_file.exists()
  finally:
    for process in (left, other):
      process.kill()
      process.wait()


def test_lock_file_name_matches_the_library():
  assert launch.LOCK_FILE == workdir_lib.LOCK_FILE


@pytest.mark.slow   # Two new processes; fast: test_end_to_end_fast.py's worker-command test.
def test_worker_command_runs_here_and_resumes(tmp_path, compilation_cache):
  """The command every TPU worker runs, run here on a tiny config: first as the bare worker
  command with this Python; then, as after a preemption, through the very script ssh gives
  each worker (bash, in a home directory laid out as the install leaves it), which resumes."""
  workdir = tmp_path / 'run'
  opts = _opts(config=TINY_CONFIG, workdir=str(workdir), allow_local_workdir=True, mode='train',
               config_overrides=())
  launch.validate(opts)
  env = dict(os.environ, JAX_PLATFORMS='cpu', **tiny.compilation_cache_env(compilation_cache))

  first = subprocess.run(launch.worker_command(opts, python=sys.executable),
                         cwd=conftest.REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=False)
  assert first.returncode == 0, first.stderr[-3000:]
  assert sorted(os.listdir(workdir / 'checkpoints'))[-1] == '4'

  home = tmp_path / 'home'
  (home / launch.REMOTE_VENV / 'bin').mkdir(parents=True)
  os.symlink(conftest.REPO_ROOT, home / launch.REMOTE_REPO)
  python = home / launch.REMOTE_VENV / 'bin' / 'python'
  python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
  python.chmod(0o755)
  second = subprocess.run(['bash', '-c', launch.run_script(opts)], cwd=tmp_path,
                          env=dict(env, HOME=str(home)),
                          capture_output=True, text=True, timeout=300, check=False)
  log = (home / launch.REMOTE_LOG).read_text()
  assert second.returncode == 0, log[-3000:]
  assert 'Resumed from checkpoint at step 4' in log
  assert 'Resumed from checkpoint' in second.stdout      # Also on the ssh session's output.
  assert (home / launch.REMOTE_PID).read_text().strip().isdigit()
  assert sorted(os.listdir(workdir / 'checkpoints'))[-1] == '4'
  steps = [json.loads(line)['step'] for line in open(workdir / 'metrics.jsonl')]
  assert steps == [1, 2, 3, 4]
