"""The run directory as a resource: checked before the work, locked while training.

Three things a run needs from its workdir, each failing early with a message that names the
path:

- `check(path, needs_checkpoint=...)`: the directory exists or can be created, is a directory,
  can be written to, and (for evaluation and analysis) holds a checkpoint. This runs before
  anything compiles, so a read-only or mistyped workdir is reported in milliseconds rather than
  after minutes of work.
- `lock(path)`: one trainer per workdir. The lock is a file, `train.lock`, created atomically
  (O_CREAT | O_EXCL) and holding the owner's pid and host. A lock left by a process that no
  longer runs on this host is reclaimed with a warning; a live owner, or an owner on another
  host (whose liveness cannot be checked from here), makes the second trainer fail.
- `whole_folder(path)`: an output folder (an evaluation, an analysis) that appears whole or
  not at all. It is written in a temporary sibling and moved into place, its completeness
  marker (`complete.json`) written last; readers ask `is_complete(path)` and treat a folder
  without the marker as absent.
- `removing_new_empty_folders(path)`: a command that fails leaves no empty folders behind.

Paths go through etils `epath`, so a workdir may be a cloud path (`gs://bucket/run`, with
`etils[epath-gcs]` installed). Object stores have no exclusive create, no append and no
rename of folders: there the lock is best effort (an existing lock is honoured, but two
trainers starting in the same second could both take it), appending rewrites the object, an
atomic replace is a single object write (atomic by itself), and a whole folder is copied into
place file by file, the marker last, so that only the marker says it is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from typing import Iterator

from absl import logging
from etils import epath

from rnn_behaviour import errors

LOCK_FILE = 'train.lock'
CHECKPOINT_DIR = 'checkpoints'
COMPLETE_MARKER = 'complete.json'


class WorkdirError(errors.UserError, OSError):
  """A workdir cannot be used for the requested job."""


class WorkdirLocked(WorkdirError):
  """Another live process is training in this workdir."""


def is_local(path) -> bool:
  """False for cloud paths (`gs://...`, `s3://...`), True for files on this machine."""
  return not re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*://', os.fspath(path))


def has_checkpoint(path) -> bool:
  """Whether `path/checkpoints` holds at least one step directory."""
  checkpoints = epath.Path(path) / CHECKPOINT_DIR
  return checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())


def latest_checkpoint_step(path) -> int | None:
  """The highest step directory in `path/checkpoints` (None: none), for messages only; code
  that restores asks Orbax's manager instead."""
  checkpoints = epath.Path(path) / CHECKPOINT_DIR
  if not checkpoints.is_dir():
    return None
  steps = [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()]
  return max(steps) if steps else None


def _nearest_existing(path: str) -> str:
  path = os.path.abspath(path)
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def _writable(directory) -> bool:
  """Whether a file can be created in `directory` (tried, since os.access lies to root)."""
  if is_local(directory):
    try:
      with tempfile.TemporaryFile(dir=os.fspath(directory)):
        return True
    except OSError:
      return False
  probe = epath.Path(directory) / f'.write_probe.{socket.gethostname()}.{os.getpid()}'
  try:
    probe.write_text('')
    probe.unlink()
    return True
  except Exception:  # pylint: disable=broad-except
    return False      # Cloud file systems raise their own errors (permissions, no bucket).


def check(path: str, *, needs_checkpoint: bool = False) -> None:
  """Fails with a WorkdirError unless `path` can serve as a run's workdir.

  Args:
    path: the workdir.
    needs_checkpoint: the job reads a trained network (evaluate, analyse), so a checkpoint must
      already be there; nothing is created in that case.
  """
  workdir = epath.Path(path)
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f'--workdir={path} is a file, not a directory; pass a directory')
  if not workdir.exists():
    if needs_checkpoint:
      raise WorkdirError(f'--workdir={path} does not exist; train first (--mode=train) or pass '
                         'the workdir of a trained run')
    if not is_local(path):
      return             # A cloud folder exists once something is written under it.
    ancestor = _nearest_existing(path)
    if not os.path.isdir(ancestor):
      raise WorkdirError(f'--workdir={path} cannot be created: {ancestor} is a file')
    if not _writable(ancestor):
      raise WorkdirError(f'--workdir={path} cannot be created: {ancestor} is not writable')
    return
  if not _writable(path):
    raise WorkdirError(f'--workdir={path} is not writable; the run writes its outputs there')
  if needs_checkpoint and not has_checkpoint(path):
    raise WorkdirError(f'--workdir={path} holds no checkpoint '
                       f'({os.path.join(path, CHECKPOINT_DIR)} is missing or empty); train first '
                       '(--mode=train)')


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True          # It exists and belongs to someone else.
  return True


def _read_owner(lock_path) -> dict | None:
  try:
    return json.loads(epath.Path(lock_path).read_text())
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}            # Being written, or torn: treated as held by an unknown owner.


def _describe(owner: dict) -> str:
  since = owner.get('time')
  when = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since)) if since else '?'
  return f'pid {owner.get("pid", "?")} on host {owner.get("host", "?")} since {when}'


def _try_create(lock_path: str, owner: dict) -> bool:
  if not is_local(lock_path):
    # Best effort on object stores (no exclusive create): honour an existing lock.
    if epath.Path(lock_path).exists():
      return False
    epath.Path(lock_path).write_text(json.dumps(owner))
    return True
  try:
    fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, 'w') as f:
    json.dump(owner, f)
  return True


def _reclaim(lock_path: str, stale: dict) -> None:
  """Moves a stale lock aside; puts it back if, in a race, it was not the stale one."""
  if not is_local(lock_path):
    epath.Path(lock_path).unlink(missing_ok=True)
    return
  aside = f'{lock_path}.stale.{os.getpid()}'
  try:
    os.rename(lock_path, aside)
  except FileNotFoundError:
    return               # Someone else reclaimed it first.
  if _read_owner(aside) == stale:
    os.remove(aside)
    return
  try:                   # We moved a fresh lock: give it back without clobbering.
    os.link(aside, lock_path)
  except FileExistsError:
    pass
  os.remove(aside)


def acquire(path: str) -> str:
  """Takes the training lock of workdir `path`; returns the lock file's path.

  Raises:
    WorkdirLocked: another live process (or a process on another host) holds it.
  """
  epath.Path(path).mkdir(parents=True, exist_ok=True)
  lock_path = os.fspath(epath.Path(path) / LOCK_FILE)
  me = {'pid': os.getpid(), 'host': socket.gethostname(), 'time': time.time()}
  for _ in range(3):
    if _try_create(lock_path, me):
      return lock_path
    owner = _read_owner(lock_path)
    if owner is None:
      continue           # Released meanwhile.
    same_host = owner.get('host') == me['host']
    pid = owner.get('pid')
    if same_host and isinstance(pid, int) and not _pid_alive(pid):
      logging.warning('Reclaiming the stale training lock %s of %s, which no longer runs.',
                      lock_path, _describe(owner))
      _reclaim(lock_path, owner)
      continue
    where = ('' if same_host else
             ' (on another host, so this one cannot tell whether it still runs)')
    raise WorkdirLocked(
        f'{path} is being trained by {_describe(owner)}{where}: two trainers on one workdir would '
        f'interleave their metrics and checkpoints. Wait for it to finish, use another '
        f'--workdir, or, if that process is gone, delete {lock_path}.')
  raise WorkdirLocked(f'could not take the training lock {lock_path}; another process keeps '
                      'taking it')


def release(lock_path: str) -> None:
  """Removes the lock if this process still owns it."""
  owner = _read_owner(lock_path)
  if owner and owner.get('pid') == os.getpid() and owner.get('host') == socket.gethostname():
    epath.Path(lock_path).unlink(missing_ok=True)


@contextlib.contextmanager
def lock(path: str) -> Iterator[str]:
  """Holds the training lock of workdir `path` for the duration of the block."""
  lock_path = acquire(path)
  try:
    yield lock_path
  finally:
    release(lock_path)


def is_complete(folder) -> bool:
  """Whether `folder` was written whole by `whole_folder` (its completeness marker is there).

  A folder without the marker (a write that was interrupted, or one written before the marker
  existed) is to be treated as absent: recomputed, never read.
  """
  return (epath.Path(folder) / COMPLETE_MARKER).exists()


def _scratch_name(name: str, kind: str) -> str:
  return f'.{name}.{kind}.{socket.gethostname()}.{os.getpid()}'


def _remove_stale_scratch(folder: epath.Path) -> None:
  """Removes the scratch siblings of `folder` left by killed writers on this host."""
  parent = folder.parent
  if not parent.is_dir():
    return
  host = socket.gethostname()
  for kind in ('partial', 'old'):
    prefix = f'.{folder.name}.{kind}.{host}.'
    for sibling in parent.iterdir():
      pid = sibling.name[len(prefix):]
      if (sibling.name.startswith(prefix) and pid.isdigit() and int(pid) != os.getpid()
          and not _pid_alive(int(pid))):
        logging.info('Removing %s, left by an interrupted write of %s.', sibling, folder)
        sibling.rmtree(missing_ok=True)


def _copy_tree(source: epath.Path, target: epath.Path, skip: tuple[str, ...] = ()) -> None:
  target.mkdir(parents=True, exist_ok=True)
  for item in source.iterdir():
    if item.name in skip:
      continue
    if item.is_dir():
      _copy_tree(item, target / item.name)
    else:
      item.copy(target / item.name, overwrite=True)


@contextlib.contextmanager
def whole_folder(path, *, keep_existing: bool = False) -> Iterator[epath.Path]:
  """Writes the folder `path` whole or not at all; yields the folder to write into.

  The block writes into a temporary sibling, `.<name>.partial.<host>.<pid>`. When it ends
  without an error the completeness marker (COMPLETE_MARKER) is written there and the folder
  replaces `path`: on a local disk by two renames (the old folder moved aside, the new one moved
  in, the old one deleted), so that at every instant `path` is the old whole folder, the new
  whole folder or absent; on an object store (no folder rename) by removing the old marker and
  files and copying the new ones in, the marker last. When the block raises, the temporary
  folder is deleted and `path` is left as it was. Readers check `is_complete(path)`.

  Args:
    path: the output folder (local or cloud).
    keep_existing: start from a copy of `path`'s current files, to add to a finished folder.
  """
  final = epath.Path(path)
  final.parent.mkdir(parents=True, exist_ok=True)
  _remove_stale_scratch(final)
  scratch = final.parent / _scratch_name(final.name, 'partial')
  scratch.rmtree(missing_ok=True)
  if keep_existing and final.is_dir():
    _copy_tree(final, scratch, skip=(COMPLETE_MARKER,))
  scratch.mkdir(parents=True, exist_ok=True)
  try:
    yield scratch
    (scratch / COMPLETE_MARKER).write_text(json.dumps(
        {'complete': True, 'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
         'host': socket.gethostname(), 'pid': os.getpid()}))
    if is_local(final):
      aside = final.parent / _scratch_name(final.name, 'old')
      if final.exists():
        os.replace(final, aside)
      os.replace(scratch, final)
      if aside.exists():
        shutil.rmtree(aside)
    else:
      (final / COMPLETE_MARKER).unlink(missing_ok=True)
      final.rmtree(missing_ok=True)
      _copy_tree(scratch, final, skip=(COMPLETE_MARKER,))
      (scratch / COMPLETE_MARKER).copy(final / COMPLETE_MARKER, overwrite=True)
      scratch.rmtree(missing_ok=True)
  except BaseException:
    scratch.rmtree(missing_ok=True)
    raise


def _directories(path: str) -> set[str]:
  found = set()
  for root, dirs, _ in os.walk(path):
    found.update(os.path.join(root, d) for d in dirs)
  return found


@contextlib.contextmanager
def removing_new_empty_folders(path) -> Iterator[None]:
  """If the block raises, removes the folders it created under `path` (and `path` itself and
  its parents, if it created them) that are still empty, so that a command that fails leaves
  no empty workdir or sub-folder behind. Folders that existed before are never removed. Cloud
  paths are left alone (an object store has no empty folders)."""
  if not is_local(path):
    yield
    return
  path = os.path.abspath(os.fspath(path))
  existing = _nearest_existing(path)
  created_parents = []
  parent = path
  while parent != existing and parent != os.path.dirname(parent):
    created_parents.append(parent)
    parent = os.path.dirname(parent)
  before = _directories(path) if os.path.isdir(path) else set()
  try:
    yield
  except BaseException:
    if os.path.isdir(path):
      new = sorted(_directories(path) - before, key=len, reverse=True)
      for folder in new + created_parents:
        try:
          os.rmdir(folder)          # Only an empty folder goes.
        except OSError:
          pass
    raise
