"""Wall time of the objectives comparison: one seed ensemble per objective vs one run per seed.

Runs the same reduced comparison (the config's objectives, seeds, model and batch; fewer training
steps and smaller evaluations) once per entry of --order, each in a fresh process and workdir,
back to back, and writes `benchmark.json` and `benchmark.md` into --workdir: per run the
process's wall time, and from the comparison's `timings.jsonl` the seconds spent training,
exporting ensemble members and evaluating. A BNS target is fitted once, before the timed runs,
and shared by all of them.

The measurement reported for issue 10 (2-core CPU, shared with other jobs, so alternate the
order and repeat):

  python experiments/benchmark_comparison.py --workdir=/tmp/bench_comparison \
      --config=experiments/configs/compare_cpu.py --num_steps=300 \
      --order=per_seed,ensemble,ensemble,per_seed

`--order` names layouts: `ensemble` (comparison.ensembles=True) or `per_seed` (False).

Measured 2026-11-29 on the 2-core CPU (load average 5-10 from other jobs), one pair only (the
pair takes about 85 minutes), with --num_steps=300 --eval_displays=32 --eval_samples=32
--bns_svi_steps=0 --order=per_seed,ensemble (compare_cpu.py: 6 objectives x 3 seeds):
one run per seed took 2532 s wall (training 1825 s, evaluation 701 s), one ensemble per
objective 2352 s (training 1633 s, export 3 s, evaluation 709 s): ratio 1.08 wall, 1.12
training. Per objective, training seconds one at a time vs ensemble: behaviour_mse 307 vs 293,
diffusion 347 vs 293, diffusion_flat 345 vs 293, diffusion_no_swaps 337 vs 280,
moment_matching 275 vs 285, task_optimal 213 vs 189.
On this CPU a vmapped step of 3 members runs at about a third of the single-run step rate, so
the ensemble saves compilations and per-run overheads only, and the order effect (load changed
during the run) is of the same size; on an accelerator the members fill the device instead.
Numbers agree between the layouts to ~1e-7 (diffusion objectives, behaviour_mse), 5e-4
(diffusion_flat), but moment_matching differed by 15-18% at 300 steps (its training losses
already differ by a few % at step 100): float differences amplified, or a real mismatch; open.
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rnn_behaviour import comparison  # pylint: disable=g-import-not-at-top,wrong-import-position
from rnn_behaviour import logs  # pylint: disable=g-import-not-at-top,wrong-import-position

LAYOUTS = ('ensemble', 'per_seed')
STAGES = ('train', 'export', 'evaluate')

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Folder for the benchmark runs and results.')
config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                           'compare_cpu.py'), 'Comparison config to time (reduced below).')
flags.DEFINE_integer('num_steps', 300, 'Training steps of every run (train.num_steps).')
flags.DEFINE_integer('eval_displays', 32, 'eval.num_displays of every run.')
flags.DEFINE_integer('eval_samples', 32, 'eval.samples_per_display of every run.')
flags.DEFINE_integer('bns_svi_steps', 100, 'eval.bns_svi_steps of every run (0: no BNS fits).')
flags.DEFINE_list('order', ['per_seed', 'ensemble'], 'Layouts to run, in this order.')
flags.DEFINE_enum('layout', None, LAYOUTS, 'Internal: run one layout in this process.')
flags.DEFINE_string('run_dir', None, 'Internal: the one run\'s workdir.')
flags.mark_flags_as_required(['workdir'])


def reduced(spec, ensembles: bool, behaviour_fit: str):
  """The comparison `spec` with the benchmark's sizes and the given layout."""
  spec = spec.copy_and_resolve_references()
  overrides = spec.overrides.to_dict() if hasattr(spec.overrides, 'to_dict') else dict(
      spec.overrides)
  overrides.setdefault('train', {}).update(num_steps=FLAGS.num_steps,
                                           checkpoint_every=FLAGS.num_steps)
  overrides.setdefault('eval', {}).update(num_displays=FLAGS.eval_displays,
                                          samples_per_display=FLAGS.eval_samples,
                                          bns_svi_steps=FLAGS.bns_svi_steps)
  if behaviour_fit:
    overrides.setdefault('behaviour', {})['fit'] = behaviour_fit
  spec.overrides = overrides
  spec.ensembles = ensembles
  return spec


def shared_behaviour(spec) -> str:
  """Fits a BNS target once into <workdir>/behaviour; '' for a parametric target."""
  behaviour_dir = os.path.join(FLAGS.workdir, 'behaviour')
  name = next(iter(spec.objectives))
  config = comparison.run_config(reduced(spec, True, ''), name, spec.seeds[0], behaviour_dir)
  if config.behaviour.source != 'bns' or config.behaviour.fit != behaviour_dir:
    return ''
  if not os.path.isdir(behaviour_dir):
    from rnn_behaviour.behaviour import pipeline  # pylint: disable=g-import-not-at-top
    pipeline.fit_behaviour(config, FLAGS.workdir)
  return os.path.abspath(behaviour_dir)


def stage_seconds(run_dir: str) -> dict:
  """Seconds per stage, summed over timings.jsonl."""
  totals = dict.fromkeys(STAGES, 0.0)
  with open(os.path.join(run_dir, comparison.TIMINGS_FILE)) as f:
    for line in f:
      record = json.loads(line)
      totals[record['stage']] += record['seconds']
  return totals


def table(results: list[dict]) -> str:
  lines = ['| run | layout | wall (s) | train (s) | export (s) | evaluate (s) |',
           '| --- | --- | --- | --- | --- | --- |']
  lines += [f"| {r['run']} | {r['layout']} | {r['wall_s']:.0f} | {r['train']:.0f} | "
            f"{r['export']:.1f} | {r['evaluate']:.0f} |" for r in results]
  means = {layout: {k: np.mean([r[k] for r in results if r['layout'] == layout])
                    for k in ('wall_s', 'train')}
           for layout in LAYOUTS if any(r['layout'] == layout for r in results)}
  if len(means) == 2:
    lines.append('')
    for k, what in (('wall_s', 'wall time'), ('train', 'training time')):
      lines.append(f"Mean {what}: per_seed {means['per_seed'][k]:.0f} s, ensemble "
                   f"{means['ensemble'][k]:.0f} s, ratio per_seed / ensemble "
                   f"{means['per_seed'][k] / means['ensemble'][k]:.2f}.")
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  logs.quiet_libraries()
  if FLAGS.layout:     # One timed comparison, in its own process.
    behaviour_fit = os.path.join(FLAGS.workdir, 'behaviour')
    spec = reduced(FLAGS.config, FLAGS.layout == 'ensemble',
                   behaviour_fit if os.path.isdir(behaviour_fit) else '')
    comparison.compare(spec, FLAGS.run_dir)
    return
  for layout in FLAGS.order:
    if layout not in LAYOUTS:
      raise app.UsageError(f'--order: {layout!r} is not one of {LAYOUTS}')
  os.makedirs(FLAGS.workdir, exist_ok=True)
  shared_behaviour(FLAGS.config)
  results = []
  for i, layout in enumerate(FLAGS.order):
    run_dir = os.path.join(FLAGS.workdir, f'{i}_{layout}')
    if os.path.exists(run_dir):
      raise app.UsageError(f'{run_dir} exists: pass a new --workdir to time fresh runs')
    start = time.perf_counter()
    subprocess.run([sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
                   + [f'--layout={layout}', f'--run_dir={run_dir}'], check=True)
    results.append(dict(run=i, layout=layout, wall_s=time.perf_counter() - start,
                        **stage_seconds(run_dir)))
    print(table(results), flush=True)
  settings = dict(config=config_flags.get_config_filename(FLAGS['config']),
                  num_steps=FLAGS.num_steps,
                  eval_displays=FLAGS.eval_displays, eval_samples=FLAGS.eval_samples,
                  bns_svi_steps=FLAGS.bns_svi_steps, seeds=list(FLAGS.config.seeds),
                  objectives=list(FLAGS.config.objectives))
  with open(os.path.join(FLAGS.workdir, 'benchmark.json'), 'w') as f:
    json.dump(dict(settings=settings, results=results), f, indent=2)
  with open(os.path.join(FLAGS.workdir, 'benchmark.md'), 'w') as f:
    f.write(table(results))


if __name__ == '__main__':
  app.run(main)
