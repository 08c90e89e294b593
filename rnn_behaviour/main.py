"""Command-line entry point.

  python -m rnn_behaviour.main --config=rnn_behaviour/configs/default.py --workdir=DIR \
      [--config.train.num_steps=100 ...] [--mode=train|evaluate|all|fit_behaviour|analyse]
      [--coordinator_address=HOST:PORT --num_processes=N --process_id=I] [--cpu_devices=D]

The logic lives in the library; this file only parses flags and dispatches, and turns errors
into exit codes:
  0  done.
  2  a user error: a bad flag, a config file that is missing or fails, a config field that does
     not exist (with the close matches) or has a bad value, a bad data file, a workdir that
     cannot serve. One line on stderr says what to fix; folders the command created and left
     empty are removed.
  3  (a multi-process job) another process died: one line, and a rerun of the job resumes from
     its last checkpoint (parallel.PEER_LOST_EXIT_CODE).
  1  anything else is a bug, reported with its traceback.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rnn_behaviour import config_validation
from rnn_behaviour import errors
from rnn_behaviour import logs
from rnn_behaviour import modes
from rnn_behaviour import parallel
from rnn_behaviour import workdir as workdir_lib

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, evaluations, plots.')
flags.DEFINE_enum('mode', 'all', modes.MODES, 'What to run.')
flags.DEFINE_bool('restart', False, 'Start the workdir afresh; its old outputs move to '
                  'superseded/<time>/.')
flags.DEFINE_string('coordinator_address', None, 'Many hosts: HOST:PORT of process 0 (with '
                    '--num_processes and --process_id); not needed on Cloud TPU pods or Slurm.')
flags.DEFINE_integer('num_processes', None, 'Many hosts: the number of processes of the job.')
flags.DEFINE_integer('process_id', None, 'Many hosts: this process\'s index, 0 .. N-1.')
flags.DEFINE_enum('distributed', 'auto', ('auto', 'on', 'off'),
                  'auto: join a multi-process job when the flags above are given or a TPU pod '
                  '/ Slurm / Open MPI launcher started this process; on: always (JAX detects '
                  'the cluster); off: never.')
flags.DEFINE_integer('heartbeat_timeout', parallel.HEARTBEAT_TIMEOUT_S,
                     'Many hosts: seconds without a heartbeat after which a process counts as '
                     'dead; the others then stop with exit code 3.', lower_bound=1)
flags.DEFINE_integer('cpu_devices', None, 'Split the host CPU into this many JAX devices '
                     '(default: config.parallel.cpu_devices).')
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])

USER_ERRORS = (errors.UserError, config_validation.ConfigError)
USER_ERROR_EXIT_CODE = 2


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of `--name=VALUE` or `--name VALUE` in argv (the last one given), or None."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{name}' and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def config_overrides(argv: list[str]) -> list[str]:
  """The dotted field paths of the `--config.a.b=...` overrides in argv, e.g. ['a.b']."""
  return [arg[len('--config.'):].split('=', 1)[0] for arg in argv
          if arg.startswith('--config.')]


def load_config_file(spec: str):
  """`get_config()` of the config file `spec` ('path.py' or 'path.py:argument').

  Raises:
    errors.UserError: the file does not exist, or it fails (the message names its line).
  """
  path, *arguments = spec.split(':', 1)
  if not os.path.isfile(path):
    raise errors.UserError(f'--config={spec}: there is no such file '
                           f'({os.path.abspath(path)}); pass a config file, e.g. '
                           '--config=rnn_behaviour/configs/default.py')
  try:
    module_spec = importlib.util.spec_from_file_location('_checked_config', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(*arguments)
  except Exception as error:  # pylint: disable=broad-except
    # Whatever a config file raises, the fix is in that file: point at its line.
    where = [frame for frame in traceback.extract_tb(error.__traceback__)
             if os.path.abspath(frame.filename) == os.path.abspath(path)]
    line = getattr(error, 'lineno', None) if isinstance(error, SyntaxError) else (
        where[-1].lineno if where else None)
    at = f' at line {line}' if line else ''
    raise errors.UserError(f'--config={spec}: the config file fails{at}: '
                           f'{type(error).__name__}: {error}') from error


def unknown_fields(config, paths: list[str]) -> list[str]:
  """One message per override path that names no field of `config`, with close matches.

  Args:
    config: the loaded ConfigDict.
    paths: dotted field paths, as `config_overrides` returns them.
  """
  problems = []
  for path in paths:
    node, walked = config, []
    for part in path.split('.'):
      keys = list(node.keys()) if hasattr(node, 'keys') else None
      where = 'config' + ''.join(f'.{w}' for w in walked)
      if keys is None:
        problems.append(f'--config.{path}: {where} is a value ({node!r}), not a section with '
                        'fields')
        break
      if part not in keys:
        close = difflib.get_close_matches(part, keys, n=3, cutoff=0.6)
        hint = (' Did you mean ' + ' or '.join(
            '--config.' + '.'.join(walked + [c]) for c in close) + '?') if close else (
                f' Its fields: {", ".join(sorted(keys))}.')
        problems.append(f'--config.{path}: {where} has no field {part!r}.{hint}')
        break
      node = node[part]
      walked.append(part)
  return problems


def _fail(message: str) -> None:
  """Reports a user error as one line on stderr and exits with code 2."""
  sys.stdout.flush()
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(USER_ERROR_EXIT_CODE)


def one_line(error: BaseException) -> str:
  """A user error's message on one line (continuation lines joined)."""
  text = ' '.join(line.strip() for line in str(error).splitlines() if line.strip())
  return text or type(error).__name__


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with user errors (an unknown flag, a config file that is missing or
  fails, a config field that does not exist) reported as one line and exit code 2."""
  try:
    spec = _flag_value(argv, 'config')
    if spec:
      problems = unknown_fields(load_config_file(spec), config_overrides(argv))
      if problems:
        raise errors.UserError(' '.join(problems))
    return FLAGS(argv)
  except flags.Error as error:
    _fail(f'{one_line(error)} (see --helpshort)')
  except errors.UserError as error:
    _fail(one_line(error))


def _exit_peer_lost(error_line: str) -> None:
  """Stops a process whose job lost a peer: one line, then exit code 3 at once (no waiting for
  the dead process at shutdown)."""
  workdir = FLAGS.workdir if workdir_lib.has_checkpoint(FLAGS.workdir) else None
  print(f'error: {parallel.peer_lost_message(error_line, workdir or FLAGS.workdir)}',
        file=sys.stderr, flush=True)
  sys.stdout.flush()
  logging.flush()
  os._exit(parallel.PEER_LOST_EXIT_CODE)  # pylint: disable=protected-access


def main(argv):
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]}: flags are written --name=value')
  logs.quiet_libraries()
  cpu_devices = FLAGS.cpu_devices
  if cpu_devices is None:
    cpu_devices = FLAGS.config.get('parallel', {}).get('cpu_devices', 0)
  try:
    with workdir_lib.removing_new_empty_folders(FLAGS.workdir):
      parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                      FLAGS.process_id, mode=FLAGS.distributed,
                                      cpu_devices=cpu_devices,
                                      heartbeat_timeout=FLAGS.heartbeat_timeout)
      logging.info('JAX devices: %s', jax.devices())
      modes.run(FLAGS.config, FLAGS.workdir, FLAGS.mode, restart=FLAGS.restart)
      parallel.leave_distributed()     # No process leaves while another still needs it.
  except USER_ERRORS as error:
    _fail(one_line(error))
  except Exception as error:  # pylint: disable=broad-except
    lost = parallel.peer_failure(error) if jax.process_count() > 1 else None
    if lost:
      _exit_peer_lost(lost)
    raise


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
