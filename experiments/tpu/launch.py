r"""Runs the main job on a Cloud TPU VM (or a queued resource) and reruns it after preemption.

  python experiments/tpu/launch.py --name=rnn-v4 --zone=us-central2-b --accelerator_type=v4-32 \
      --config=rnn_behaviour/configs/paper.py --workdir=gs://BUCKET/runs/paper \
      [--queued] [--spot] [--config_overrides=train.num_steps=20000 ...] [--delete_after] \
      [--dry_run]

big_vision's recipe: create a TPU VM, put the code on every worker, run the same command on
every worker (`gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...`), keep the
workdir in a bucket. On a pod, `jax.distributed.initialize()` finds the other workers by
itself, so the worker command carries no distributed flags. A run resumes from the last
checkpoint in its workdir, so after a preemption this script deletes the TPU, creates it
again, reinstalls and reruns the same command, up to --max_retries times.

Every step is a pure function of `Options` that returns argv lists (the one shell string is
the script given to ssh's --command, quoted with shlex); `launch` runs them through an
injected runner, so that `--dry_run` prints them, in order, and tests can fake gcloud.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Callable, NamedTuple, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Names of things in the home directory of every TPU worker.
REMOTE_REPO = 'rnn_behaviour'
REMOTE_VENV = 'rnn_behaviour_venv'
REMOTE_ARCHIVE = 'rnn_behaviour.tar.gz'
REMOTE_LOG = 'rnn_behaviour.log'
REMOTE_PID = 'rnn_behaviour.pid'
# jax[tpu] brings libtpu; the package's `gcs` extra brings gs:// support (etils[epath-gcs] for
# the run's files, google-cloud-storage for tensorboardX's events).
PACKAGE_EXTRA = 'gcs'
TPU_PACKAGES = ('jax[tpu]',)
PYTHON_VERSION = '3.11'          # pyproject's requires-python; TPU images ship Ubuntu's 3.10.
UV_INSTALLER = 'https://astral.sh/uv/install.sh'

# rnn_behaviour.workdir.LOCK_FILE (tests check they agree; not imported, so that this script
# runs where only gcloud and absl are installed).
LOCK_FILE = 'train.lock'

# Software versions the Cloud TPU docs give for JAX, by accelerator family.
RUNTIME_VERSIONS = {
    'v2': 'tpu-ubuntu2204-base', 'v3': 'tpu-ubuntu2204-base', 'v4': 'tpu-ubuntu2204-base',
    'v5litepod': 'v2-alpha-tpuv5-lite', 'v5p': 'v2-alpha-tpuv5', 'v6e': 'v2-alpha-tpuv6e',
}

# TPU VM node states and queued-resource states, as `describe` prints them.
NODE_READY = 'READY'
NODE_GONE = ('PREEMPTED', 'TERMINATED', 'STOPPED')
QUEUED_READY = 'ACTIVE'
QUEUED_GONE = ('SUSPENDING', 'SUSPENDED', 'FAILED')


@dataclasses.dataclass(frozen=True)
class Options:
  """What one launch needs; the command-line flags of the same names fill it."""
  name: str
  zone: str
  accelerator_type: str
  config: str
  workdir: str
  runtime_version: str | None = None     # None: RUNTIME_VERSIONS by accelerator family.
  project: str | None = None
  queued: bool = False
  spot: bool = False
  preemptible: bool = False
  config_overrides: tuple[str, ...] = ()
  mode: str = 'all'
  repo: str = REPO_ROOT                 # A git URL, or a local git checkout to ship.
  ref: str = 'HEAD'
  max_retries: int = 3
  delete_after: bool = False
  allow_local_workdir: bool = False
  poll_seconds: float = 60.0
  ready_timeout_s: float = 24 * 3600.0  # How long to wait for a queued TPU (or a new VM).

  @property
  def queued_resource(self) -> str:
    """The queued resource's id; its TPU node is `name`."""
    return f'{self.name}-qr'

  @property
  def local_repo(self) -> bool:
    return not _is_git_url(self.repo)

  @property
  def archive(self) -> str:
    """Where a local repository is packed before it is copied to the workers."""
    return os.path.join(tempfile.gettempdir(), f'{self.name}-{REMOTE_ARCHIVE}')


def _is_git_url(repo: str) -> bool:
  return '://' in repo or repo.startswith('git@')


def runtime_version(opts: Options) -> str:
  if opts.runtime_version:
    return opts.runtime_version
  family = opts.accelerator_type.rsplit('-', 1)[0]
  if family not in RUNTIME_VERSIONS:
    raise ValueError(f'--runtime_version is needed for --accelerator_type='
                     f'{opts.accelerator_type} (defaults are known for '
                     f'{", ".join(sorted(RUNTIME_VERSIONS))})')
  return RUNTIME_VERSIONS[family]


def validate(opts: Options) -> None:
  """Raises ValueError naming the flag at fault."""
  if not re.fullmatch(r'[a-z]([-a-z0-9]{0,50}[a-z0-9])?', opts.name):
    raise ValueError(f'--name={opts.name!r}: lowercase letters, digits and hyphens, starting '
                     'with a letter (a TPU name)')
  if not opts.zone:
    raise ValueError('--zone is required (e.g. us-central2-b)')
  if not re.fullmatch(r'v\d+[a-z]*-\d+', opts.accelerator_type):
    raise ValueError(f'--accelerator_type={opts.accelerator_type!r}: expected a type like '
                     'v4-32 or v5litepod-16')
  runtime_version(opts)
  if not opts.workdir.startswith('gs://') and not opts.allow_local_workdir:
    raise ValueError(
        f'--workdir must be a gs:// path (got {opts.workdir!r}): every TPU worker writes to '
        'it and it must outlive a preempted TPU. --allow_local_workdir allows a path on the '
        'VM (one host only; lost with the VM).')
  if opts.spot and opts.preemptible:
    raise ValueError('--spot and --preemptible exclude each other')
  if opts.queued and opts.preemptible:
    raise ValueError('--preemptible is not offered for queued resources; use --spot')
  if opts.poll_seconds <= 0:
    raise ValueError('poll_seconds must be > 0')
  if opts.max_retries < 0:
    raise ValueError('--max_retries must be >= 0')
  for override in opts.config_overrides:
    if '=' not in override or override.startswith('='):
      raise ValueError(f'--config_overrides={override!r}: expected key=value, e.g. '
                       'train.num_steps=1000')
  if not opts.config:
    raise ValueError('--config is required (a config file inside the repository)')
  if opts.local_repo:
    if not os.path.isdir(opts.repo):
      raise ValueError(f'--repo={opts.repo!r} is neither a git URL nor a local directory')
    config_file = os.path.join(opts.repo, opts.config.split(':', 1)[0])
    if not os.path.isfile(config_file):
      raise ValueError(f'--config={opts.config!r}: no such file in --repo={opts.repo}')


def _gcloud(opts: Options, *args: str) -> list[str]:
  command = ['gcloud', 'compute', 'tpus', *args]
  if opts.project:
    command.append(f'--project={opts.project}')
  return command


def create_commands(opts: Options) -> list[list[str]]:
  """Creates the TPU VM, or queues a request for it (`--queued`)."""
  tier = ['--spot'] if opts.spot else ['--preemptible'] if opts.preemptible else []
  if opts.queued:
    return [_gcloud(opts, 'queued-resources', 'create', opts.queued_resource,
                    f'--node-id={opts.name}', f'--zone={opts.zone}',
                    f'--accelerator-type={opts.accelerator_type}',
                    f'--runtime-version={runtime_version(opts)}', *tier)]
  return [_gcloud(opts, 'tpu-vm', 'create', opts.name, f'--zone={opts.zone}',
                  f'--accelerator-type={opts.accelerator_type}',
                  f'--version={runtime_version(opts)}', *tier)]


def status_command(opts: Options) -> list[str]:
  """Prints the TPU's state (READY, PREEMPTED, ...) or the queued resource's (ACTIVE, ...)."""
  if opts.queued:
    return _gcloud(opts, 'queued-resources', 'describe', opts.queued_resource,
                   f'--zone={opts.zone}', '--format=value(state.state)')
  return _gcloud(opts, 'tpu-vm', 'describe', opts.name, f'--zone={opts.zone}',
                 '--format=value(state)')


def delete_commands(opts: Options) -> list[list[str]]:
  """Deletes the TPU (a queued resource with its node: --force)."""
  if opts.queued:
    return [_gcloud(opts, 'queued-resources', 'delete', opts.queued_resource,
                    f'--zone={opts.zone}', '--force', '--quiet')]
  return [_gcloud(opts, 'tpu-vm', 'delete', opts.name, f'--zone={opts.zone}', '--quiet')]


def ssh_command(opts: Options, script: str, worker: str = 'all') -> list[str]:
  """`script` run by the login shell (bash) of each worker, in its home directory."""
  return _gcloud(opts, 'tpu-vm', 'ssh', opts.name, f'--zone={opts.zone}',
                 f'--worker={worker}') + [f'--command={script}']


def clear_lock_commands(opts: Options) -> list[list[str]]:
  """Removes the training lock a deleted TPU left in the workdir (its owner is gone, and a new
  VM is another host, whose trainer would refuse the lock)."""
  lock = f'{opts.workdir.rstrip("/")}/{LOCK_FILE}'
  if opts.workdir.startswith('gs://'):
    return [['gcloud', 'storage', 'rm', lock]]
  return []                              # A local workdir went with the VM.


def package_commands(opts: Options) -> list[list[str]]:
  """Packs a local repository at --ref (committed files only) for copying to the workers."""
  if not opts.local_repo:
    return []
  return [['git', '-C', opts.repo, 'archive', '--format=tar.gz', f'--output={opts.archive}',
           opts.ref]]


def _stop_previous_script() -> str:
  """Shell that stops a run this launcher started earlier on the worker (an ssh session can
  drop while its job goes on), so that a rerun does not meet a live trainer."""
  alive = 'grep -qas rnn_behaviour.main /proc/$pid/cmdline'   # False once it is a zombie.
  return (f'if [ -f "$HOME/{REMOTE_PID}" ]; then pid=$(cat "$HOME/{REMOTE_PID}"); '
          f'if {alive}; then kill $pid; while {alive}; do sleep 1; done; fi; '
          f'rm -f "$HOME/{REMOTE_PID}"; fi')


def install_script(opts: Options) -> str:
  """Shell run on every worker: the code at --ref and a Python 3.11 venv with the package,
  jax[tpu] and gs:// support. Idempotent (a rerun starts from scratch)."""
  if opts.local_repo:
    fetch = (f'rm -rf {REMOTE_REPO} && mkdir {REMOTE_REPO} && '
             f'tar -xzf {REMOTE_ARCHIVE} -C {REMOTE_REPO}')
  else:
    fetch = (f'rm -rf {REMOTE_REPO} && git clone --quiet {shlex.quote(opts.repo)} {REMOTE_REPO}'
             f' && git -C {REMOTE_REPO} checkout --quiet {shlex.quote(opts.ref)}')
  packages = ' '.join(f'"{p}"' for p in TPU_PACKAGES)   # Quoted: [] is a glob.
  return '; '.join([
      'set -e',
      _stop_previous_script(),
      'cd "$HOME"',
      fetch,
      'export PATH="$HOME/.local/bin:$PATH"',
      f'command -v uv >/dev/null || curl -LsSf {UV_INSTALLER} | sh',
      f'rm -rf {REMOTE_VENV}',
      f'uv venv --quiet --python {PYTHON_VERSION} {REMOTE_VENV}',
      f'uv pip install --quiet --python {REMOTE_VENV}/bin/python '
      f'-e "./{REMOTE_REPO}[{PACKAGE_EXTRA}]" {packages}',
  ])


def install_commands(opts: Options) -> list[list[str]]:
  """Copies the packed repository (local --repo) and installs it on every worker."""
  commands = []
  if opts.local_repo:
    commands.append(_gcloud(opts, 'tpu-vm', 'scp', opts.archive,
                            f'{opts.name}:{REMOTE_ARCHIVE}', f'--zone={opts.zone}',
                            '--worker=all'))
  commands.append(ssh_command(opts, install_script(opts)))
  return commands


def config_flags(opts: Options) -> list[str]:
  """--config_overrides key=value as the entry point's --config.key=value."""
  flags = []
  for override in opts.config_overrides:
    key, value = override.split('=', 1)
    key = key.removeprefix('--').removeprefix('config.')
    flags.append(f'--config.{key}={value}')
  return flags


def worker_command(opts: Options, python: str = 'python') -> list[str]:
  """The main job, as every worker runs it from the repository's root. No distributed flags:
  on a TPU VM, jax.distributed.initialize() finds the other workers by itself."""
  return [python, '-m', 'rnn_behaviour.main', f'--config={opts.config}',
          f'--workdir={opts.workdir}', f'--mode={opts.mode}', *config_flags(opts)]


def run_script(opts: Options) -> str:
  """Shell run on every worker: the worker command from the repository's root, its output
  also appended to ~/rnn_behaviour.log, its pid in ~/rnn_behaviour.pid; its exit status is
  the script's."""
  arguments = shlex.join(worker_command(opts)[1:])
  return (f'{_stop_previous_script()}; cd "$HOME/{REMOTE_REPO}" && '
          f'echo $$ > "$HOME/{REMOTE_PID}" && '
          f'exec "$HOME/{REMOTE_VENV}/bin/python" {arguments} '
          f'> >(tee -a "$HOME/{REMOTE_LOG}") 2>&1')


def run_commands(opts: Options) -> list[list[str]]:
  """Runs the main job on all workers at once."""
  return [ssh_command(opts, run_script(opts))]


def logs_command(opts: Options, worker: str = '0', lines: int = 50) -> list[str]:
  """Follows a worker's log (the one of process 0 by default)."""
  return ssh_command(opts, f'tail -n {lines} -f {REMOTE_LOG}', worker=worker)


# --- The driver ---------------------------------------------------------------------------

class Result(NamedTuple):
  returncode: int
  stdout: str = ''


Runner = Callable[..., Result]   # runner(argv, capture=False) -> Result


class NotReady(Exception):
  """The TPU went away (preempted, suspended, failed) or never became ready."""


def subprocess_runner(argv: Sequence[str], capture: bool = False) -> Result:
  """Runs a command, echoing it first; `capture` keeps its stdout (for states)."""
  print('+ ' + shlex.join(argv), flush=True)
  if capture:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    return Result(completed.returncode, completed.stdout)
  return Result(subprocess.run(argv, check=False).returncode)


def _ready_and_gone(opts: Options) -> tuple[str, tuple[str, ...]]:
  return (QUEUED_READY, QUEUED_GONE) if opts.queued else (NODE_READY, NODE_GONE)


def tpu_state(opts: Options, runner: Runner) -> str | None:
  """The state `describe` reports, or None when there is no such TPU (or it cannot tell)."""
  result = runner(status_command(opts), capture=True)
  state = result.stdout.strip()
  return state if result.returncode == 0 and state else None


def _run_all(commands: Sequence[Sequence[str]], runner: Runner, what: str) -> None:
  for command in commands:
    if runner(command).returncode != 0:
      raise NotReady(f'{what} failed: {shlex.join(command)}')


def ensure_tpu(opts: Options, runner: Runner, sleep: Callable[[float], None],
               say: Callable[[str], None]) -> None:
  """Makes the TPU exist and be ready: keeps a ready one, deletes one that is gone (and the
  training lock it left), creates one when there is none, and waits until it is ready."""
  ready, gone = _ready_and_gone(opts)
  state = tpu_state(opts, runner)
  if state in gone:
    say(f'{opts.name} is {state}: deleting it and the training lock it left')
    _run_all(delete_commands(opts), runner, 'deleting the TPU')
    for command in clear_lock_commands(opts):
      runner(command)                 # No lock (a clean stop) is fine.
    state = None
  if state is None:
    _run_all(create_commands(opts), runner, 'creating the TPU')
  waited, reported = 0.0, ''
  while (state := tpu_state(opts, runner)) != ready:
    if state in gone:
      raise NotReady(f'{opts.name} became {state} before it was ready')
    if waited >= opts.ready_timeout_s:
      raise NotReady(f'{opts.name} not {ready} after {waited:.0f} s (state {state})')
    if state != reported:                # A queued request can wait for hours: say changes.
      say(f'waiting for {opts.name} to be {ready}: {state or "not listed yet"}')
      reported = state
    sleep(opts.poll_seconds)
    waited += opts.poll_seconds


def launch(opts: Options, runner: Runner = subprocess_runner,
           sleep: Callable[[float], None] = time.sleep,
           say: Callable[[str], None] = lambda line: print('# ' + line, flush=True)) -> int:
  """Creates the TPU, installs, runs; after a preemption (or a failed run) recreates the TPU
  if it is gone and reruns, up to opts.max_retries times. Returns 0 when the run finished."""
  validate(opts)
  say(f'{opts.name}: {opts.accelerator_type} in {opts.zone}'
      f'{" (queued resource " + opts.queued_resource + ")" if opts.queued else ""}, '
      f'config {opts.config}, workdir {opts.workdir}')
  try:
    try:
      _run_all(package_commands(opts), runner, 'packing the repository')
    except NotReady as error:
      say(str(error))
      return 1
    retries = 0
    while True:
      try:
        ensure_tpu(opts, runner, sleep, say)
        _run_all(install_commands(opts), runner, 'installing')
        returncode = runner(run_commands(opts)[0]).returncode
        if returncode == 0:
          say(f'the run finished; results in {opts.workdir}')
          return 0
        state = tpu_state(opts, runner)
        reason = f'the run exited with status {returncode} and {opts.name} is {state or "gone"}'
      except NotReady as error:
        reason = str(error)
      if retries >= opts.max_retries:
        say(f'giving up: {reason}; {opts.max_retries} retries used')
        return 1
      retries += 1
      say(f'retry {retries} of {opts.max_retries}: {reason}; the rerun resumes from the last '
          f'checkpoint in {opts.workdir}')
  finally:
    if opts.delete_after:
      say(f'--delete_after: deleting {opts.name}')
      for command in delete_commands(opts):
        runner(command)


class DryRunner:
  """Prints each command instead of running it, and plays gcloud so that the driver walks its
  whole path once: no TPU at first, then ready, then the first run is preempted."""

  def __init__(self, opts: Options, out=sys.stdout):
    self._opts = opts
    self._out = out
    self._exists = False
    self._preempted = False
    self._runs = 0

  def __call__(self, argv: Sequence[str], capture: bool = False) -> Result:
    del capture
    print(shlex.join(argv), file=self._out, flush=True)
    argv = list(argv)
    ready, _ = _ready_and_gone(self._opts)
    if argv == status_command(self._opts):
      if not self._exists:
        return Result(1)
      preempted = 'SUSPENDED' if self._opts.queued else 'PREEMPTED'
      return Result(0, preempted if self._preempted else ready)
    if argv in create_commands(self._opts):
      self._exists, self._preempted = True, False
    elif argv in delete_commands(self._opts):
      self._exists = False
    elif argv in run_commands(self._opts):
      self._runs += 1
      if self._runs == 1:
        print('# (dry run: simulating a preemption of this run)', file=self._out, flush=True)
        self._preempted = True
        return Result(255)
    return Result(0)


def dry_run(opts: Options, out=sys.stdout) -> int:
  """Prints every command `launch` would run, in order, one per line (comments start with #),
  through one simulated preemption and retry."""
  print('# dry run: nothing is executed', file=out)
  return launch(opts, runner=DryRunner(opts, out), sleep=lambda _: None,
                say=lambda line: print('# ' + line, file=out, flush=True))


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('name', None, 'TPU name (and queued resource NAME-qr with --queued).')
  flags.DEFINE_string('zone', None, 'Zone, e.g. us-central2-b (v4) or us-west4-a (v5e).')
  flags.DEFINE_string('project', None, 'Google Cloud project; default: gcloud\'s.')
  flags.DEFINE_string('accelerator_type', None, 'e.g. v4-8, v4-32, v5litepod-16.')
  flags.DEFINE_string('runtime_version', None, 'TPU software version; default by family, '
                      'e.g. tpu-ubuntu2204-base for v4, v2-alpha-tpuv5-lite for v5e.')
  flags.DEFINE_bool('queued', False, 'Request the TPU as a queued resource.')
  flags.DEFINE_bool('spot', False, 'Spot TPU (cheaper; can be preempted).')
  flags.DEFINE_bool('preemptible', False, 'Preemptible TPU (TPU VMs only).')
  flags.DEFINE_string('config', None, 'Config file, relative to the repository root '
                      '(a `:arg` suffix is passed on).')
  flags.DEFINE_string('workdir', None, 'gs://BUCKET/PATH shared by all workers.')
  flags.DEFINE_bool('allow_local_workdir', False, 'Allow a --workdir that is not gs://.')
  flags.DEFINE_multi_string('config_overrides', [], 'key=value, passed as --config.key=value.')
  flags.DEFINE_string('mode', 'all', 'The entry point\'s --mode.')
  flags.DEFINE_string('repo', REPO_ROOT, 'A git URL, or a local checkout packed at --ref.')
  flags.DEFINE_string('ref', 'HEAD', 'Commit, branch or tag to run.')
  flags.DEFINE_integer('max_retries', 3, 'Reruns after preemptions or failed runs.')
  flags.DEFINE_bool('delete_after', False, 'Delete the TPU when the launcher ends.')
  flags.DEFINE_bool('dry_run', False, 'Print every command instead of running it.')
  flags.mark_flags_as_required(['name', 'zone', 'accelerator_type', 'config', 'workdir'])


def main(argv):
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  f = flags.FLAGS
  opts = Options(
      name=f.name, zone=f.zone, project=f.project, accelerator_type=f.accelerator_type,
      runtime_version=f.runtime_version, queued=f.queued, spot=f.spot,
      preemptible=f.preemptible, config=f.config, workdir=f.workdir,
      allow_local_workdir=f.allow_local_workdir, config_overrides=tuple(f.config_overrides),
      mode=f.mode, repo=f.repo, ref=f.ref, max_retries=f.max_retries,
      delete_after=f.delete_after)
  try:
    validate(opts)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  return dry_run(opts) if f.dry_run else launch(opts)


if __name__ == '__main__':
  from absl import app as absl_app  # pylint: disable=g-import-not-at-top
  _define_flags()
  absl_app.run(main)
