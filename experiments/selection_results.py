"""Writes the cue-selection results (curricula that end when learned, the ablation, the paper's
findings on the networks that learned) as a markdown section, from the runs' own records.

  python experiments/selection_results.py --chain=probe:/runs/sel2_probe \
      --chain=index:/runs/sel2_index --ablation=/runs/abl2_variants --ablation=/runs/abl_paths \
      --experiment=/runs/pm --out=docs/results_selection.md

Every table is read from files the runs wrote (criterion.json / criterion.csv of each stage,
paper_mechanisms.md of the experiment) and stamped with the commit, date, machine and this
command; nothing is typed by hand.
"""

import datetime
import os
import platform
import subprocess
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rnn_behaviour import criteria  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('chain', [], 'NAME:DIR of a curriculum whose stages are tabulated.')
flags.DEFINE_multi_string('ablation', [], 'DIR[=what it is] of an ablation curriculum (one row '
                          'a stage).')
flags.DEFINE_string('experiment', '', 'DIR of a paper_mechanisms experiment.')
flags.DEFINE_string('out', 'docs/results_selection.md', 'Markdown file to write.')


def stamp() -> str:
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=here,
                            capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    commit = 'unknown'
  machine = f'{platform.machine()}, {os.cpu_count()} cores, {platform.system()}'
  command = 'python ' + ' '.join(sys.argv)
  return (f'Commit {commit}; written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} '
          f'UTC; machine: {machine}; command: `{command}`.')


def _stages(directory: str) -> list[str]:
  """Stage folders of a curriculum in the order they were trained (by config.json time)."""
  found = []
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    if os.path.isfile(os.path.join(path, 'config.json')):
      found.append((os.path.getmtime(os.path.join(path, 'config.json')), name))
  return [name for _, name in sorted(found)]


def _wall_minutes(path: str) -> float:
  """Minutes from the stage's config.json to its criterion record (its training's wall)."""
  start = os.path.getmtime(os.path.join(path, 'config.json'))
  end = os.path.getmtime(os.path.join(path, criteria.RECORD_FILE))
  return max(end - start, 0.0) / 60


def _members(record: dict) -> str:
  return ' / '.join(f"{m['swap_rate']:.3f}" for m in record['members'])


def stage_rows(directory: str, source_note=lambda name: '') -> list[str]:
  rows = []
  for name in _stages(directory):
    path = os.path.join(directory, name)
    record = criteria.read_record(path)
    if record is None:
      rows.append(f'| {name} | {source_note(name)} | (no criterion record: still training or '
                  'stopped before) | | | | |')
      continue
    target = record['members'][0]['target_swap_rate'] if record['members'] else float('nan')
    learned = sum(m['learned'] for m in record['members'])
    ended = (f"met at {record['met_step']}" if record['met']
             else f"not met in {record['budget']}")
    bins = record['settings'].get('bin_tolerance') or 0
    bin_text = (' (max bin error ' + ' / '.join(f"{m['max_bin_error']:.3f}"
                                                for m in record['members']) + ')') if bins else ''
    rows.append(f"| {name} | {source_note(name)} | {ended} | {_members(record)}{bin_text} | "
                f"{target:.3f} | {learned} of {len(record['members'])} | "
                f'{_wall_minutes(path):.1f} |')
  return rows


HEADER = ('| stage | started from | criterion (steps) | held-out swap rate per member | target | '
          'members learned | wall (min) |', '| --- | --- | --- | --- | --- | --- | --- |')


def source_of(directory: str):
  import json  # pylint: disable=g-import-not-at-top

  def note(name):
    with open(os.path.join(directory, name, 'config.json')) as f:
      source = json.load(f).get('initialised_from')
    if not source:
      return 'scratch'
    member = source.get('member')
    return os.path.basename(source['workdir']) + (f' (member {member})' if member is not None
                                                  else '')
  return note


def main(argv):
  del argv
  lines = ['# Cue selection at the paper\'s preparatory noise', '', stamp(), '',
           'Wall: minutes from a stage\'s config.json to its criterion record on the shared '
           '2-core machine; it includes time a stage waited (a restart, a paused process), so '
           'compare steps, not minutes.', '']
  for spec in FLAGS.chain:
    name, directory = spec.split(':', 1)
    lines += [f'## The {name} chain ({directory})', '',
              'Each stage ends when learned (criterion: held-out swap rate within 0.05 of the '
              "target's in at least 2 of 3 members, checked every 250 steps); a stage's step "
              'count is its budget.', '', *HEADER, *stage_rows(directory, source_of(directory)),
              '']
  for spec in FLAGS.ablation:
    directory, _, what = spec.partition('=')
    lines += [f'## Ablation: {os.path.basename(directory.rstrip("/"))}', '',
              *([what, ''] if what else []), *HEADER,
              *stage_rows(directory, source_of(directory)), '']
  if FLAGS.experiment:
    path = os.path.join(FLAGS.experiment, 'paper_mechanisms.md')
    if os.path.exists(path):
      with open(path) as f:
        lines += [f'## The paper\'s findings ({FLAGS.experiment})', '', f.read(), '']
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  with open(FLAGS.out, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
