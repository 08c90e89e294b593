"""What a workdir records about its runs: the metrics log, the resolved config and its history,
the config differences that refuse a resume, and supersede (a restart that loses nothing).

Guarantees (see also rnn_behaviour/workdir.py): a resumed run computes what the original run
would have, so any config change that alters the computation is refused, naming the fields
(`config_differences`); extending a run needs the schedule's length fixed explicitly
(config.train.decay_steps); `train(..., restart=True)` starts afresh and moves the old outputs to
`superseded/` (`supersede`). Every config a workdir has trained under is appended to
`config_history.jsonl`.
"""

from __future__ import annotations

import json
import os
import socket
import time

from etils import epath
import ml_collections

from rnn_behaviour import files
from rnn_behaviour import train_step
from rnn_behaviour import workdir as workdir_lib

METRICS_FILE = 'metrics.jsonl'


HISTORY_FILE = 'config_history.jsonl'


MEMBERS_DIR = 'members'        # An ensemble's per-member TensorBoard events and metrics.


SUPERSEDED_DIR = 'superseded'  # Outputs of runs replaced by `train(..., restart=True)`.


def metric_files(workdir: str) -> list[str]:
  """The run's metrics.jsonl and, for an ensemble, each member's copy."""
  members = epath.Path(workdir) / MEMBERS_DIR
  extra = sorted(d / METRICS_FILE for d in members.iterdir()) if members.is_dir() else []
  return [epath.Path(workdir) / METRICS_FILE] + extra


def truncate_metrics(path: str, last_step: int) -> None:
  """Drops metric lines past a restored step (and torn lines), so a resumed log has neither
  duplicates nor a half-written record; the file is replaced atomically."""
  if not epath.Path(path).exists():
    return
  num_lines = sum(1 for line in epath.Path(path).read_text().splitlines() if line.strip())
  kept = [r for r in files.read_jsonl(path) if r.get('step', 0) <= last_step]
  if len(kept) != num_lines:
    files.write_jsonl_atomic(path, kept)


def read_metrics(workdir: str, member: int | None = None) -> list[dict]:
  """The metric records of a run; for an ensemble, those of one member (None: all).

  A torn line (a write cut short by a kill) is dropped with a warning.
  """
  records = files.read_jsonl(epath.Path(workdir) / METRICS_FILE)
  for record in records:
    if 'member' in record:
      record['member'] = int(record['member'])
  if member is None:
    return records
  return [r for r in records if r.get('member', 0) == member]


def append_member_record(workdir: str, step: int, member: int, scalars: dict,
                          rate: float) -> None:
  """One ensemble member's record in the run's metrics.jsonl (format: step, member, metrics)."""
  record = {'step': int(step), 'member': int(member),
            **{k: float(v) for k, v in scalars.items()}, 'steps_per_s': float(rate)}
  files.append_jsonl(epath.Path(workdir) / METRICS_FILE, record, sort_keys=False)


# Fields a resumed run may change: they do not alter what is computed. train.num_steps may grow
# (or shrink) as long as the schedule's length, train_step.decay_horizon(), stays the same.
RESUME_FREE = ('eval', 'analysis', 'train.num_steps', 'train.log_every',
               'train.checkpoint_every', 'train.keep_checkpoints', 'train.init_from',
               'train.init_member', 'train.init_optimizer',
               'train.remat', 'train.divergence_factor', 'train.divergence_patience',
               'train.divergence_window', 'parallel')


_HORIZON = 'train.decay_steps (effective: the cosine schedule\'s length)'


def saved_config(workdir: str) -> dict | None:
  path = epath.Path(workdir) / 'config.json'
  if not path.exists():
    return None
  with path.open() as f:
    try:
      return json.load(f)
    except ValueError as error:
      raise ValueError(f'{path} is not valid JSON ({error}); it records the run\'s config, '
                       'restore it from config_history.jsonl') from None


def _flatten(tree, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = value
  return flat


def _computation(content: dict) -> dict:
  """The fields of a config (as JSON) that fix what a run computes, dotted, plus the derived
  ensemble size and schedule length (which older config.json files leave implicit)."""
  flat = {k: v for k, v in _flatten(content).items()
          if not any(k == f or k.startswith(f + '.') for f in RESUME_FREE)}
  flat.pop('train.decay_steps', None)
  train_content = content.get('train', {})
  flat['train.ensemble_size'] = train_content.get('ensemble_size', 1)
  if ('num_steps' in train_content and 'warmup_steps' in train_content
      and train_content.get('schedule', 'cosine') != 'constant'):
    flat[_HORIZON] = train_step.decay_horizon(train_content)
  return flat


def config_differences(saved: dict, config) -> list[str]:
  """'config.<field>: <before> -> <now>' for each field whose change would alter the run.

  A field that only one side has (a knob added to or removed from the code since) is not a
  difference: new knobs default to the old behaviour.
  """
  before = _computation(saved)
  now = _computation(json.loads(config.to_json_best_effort()))
  return [f'config.{k}: {before[k]!r} -> {now[k]!r}'
          for k in sorted(set(before) & set(now)) if before[k] != now[k]]


def check_resumable(config, workdir: str) -> None:
  """Fails, naming the fields, if `workdir` holds checkpoints of a run computed differently.

  Allowed: the fields in RESUME_FREE (eval.*, analysis.*, logging and checkpoint cadence,
  train.init_from, ...) and a different train.num_steps with the same schedule length; to
  extend a run, keep its schedule with --config.train.decay_steps=<its old num_steps>.
  """
  saved = saved_config(workdir)
  if saved is None or not workdir_lib.has_checkpoint(workdir):
    return
  differences = config_differences(saved, config)
  if not differences:
    return
  hint = ''
  if any(d.startswith(f'config.{_HORIZON}') for d in differences):
    old = train_step.decay_horizon(saved['train'])
    hint = (f' To extend the run with its schedule unchanged (the learning rate stays at its '
            f'final value past step {old}), add --config.train.decay_steps={old}.')
  raise ValueError(
      f'{workdir} holds checkpoints of a run computed under another config '
      f'({"; ".join(differences)}), so resuming would not continue that run.{hint} Otherwise '
      'use the old values, a new --workdir, or start this workdir afresh with '
      'train.train(config, workdir, restart=True) (the old outputs move to '
      f'{SUPERSEDED_DIR}/).')


def save_config(config, workdir: str, extra: dict | None = None) -> None:
  """Writes the resolved config (plus `extra` top-level entries) to <workdir>/config.json."""
  epath.Path(workdir).mkdir(parents=True, exist_ok=True)
  content = json.loads(config.to_json_best_effort())
  content.update(extra or {})
  text = json.dumps(content, indent=2, sort_keys=True)
  path = epath.Path(workdir) / 'config.json'
  if not workdir_lib.is_local(workdir):
    path.write_text(text)    # One object write: atomic by itself.
    return
  temporary = path.with_name(f'config.json.{os.getpid()}.tmp')
  temporary.write_text(text)
  temporary.replace(path)


def record_history(config, workdir: str, event: str, step: int, extra: dict | None = None
                   ) -> None:
  """Appends the config a run now trains under to <workdir>/config_history.jsonl.

  A workdir trained before the history existed first gets its config.json recorded, so every
  config a workdir has run under stays on file.
  """
  path = epath.Path(workdir) / HISTORY_FILE
  if not path.exists():
    saved = saved_config(workdir)
    if saved is not None:
      files.append_jsonl(path, {'event': 'recorded from config.json', 'config': saved})
  files.append_jsonl(path, {
      'event': event, 'step': step, 'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
      'host': socket.gethostname(), 'pid': os.getpid(),
      'config': dict(json.loads(config.to_json_best_effort()), **(extra or {}))})


def supersede(workdir: str) -> str | None:
  """Moves a workdir's training outputs to <workdir>/superseded/<time>/; returns that folder.

  Used to start a workdir afresh without losing anything: checkpoints, metrics, TensorBoard
  events, members/, eval/ and analysis outputs, and a copy of config.json move; the config
  history stays (and records the restart).
  """
  root = epath.Path(workdir)
  names = [n for n in (workdir_lib.CHECKPOINT_DIR, METRICS_FILE, MEMBERS_DIR, 'eval', 'analysis',
                       'analysis_paper') if (root / n).exists()]
  names += sorted(p.name for p in root.iterdir() if p.name.startswith('events.out.tfevents.'))
  if not names:
    return None
  stamp = time.strftime('%Y%m%d-%H%M%S')
  while (root / SUPERSEDED_DIR / stamp).exists():
    stamp += '_'
  target = root / SUPERSEDED_DIR / stamp
  target.mkdir(parents=True)
  for name in names:
    (root / name).rename(target / name)
  if (root / 'config.json').exists():
    (root / 'config.json').copy(target / 'config.json')
  return os.fspath(target)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved in its workdir."""
  saved = saved_config(workdir)
  if saved is None:
    raise FileNotFoundError(f'{epath.Path(workdir) / "config.json"}: not a training workdir '
                            '(no config.json)')
  saved.pop('initialised_from', None)
  return ml_collections.ConfigDict(saved)
