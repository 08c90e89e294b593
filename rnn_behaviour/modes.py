"""What each `--mode` of the entry point does, as a library call (no flags here)."""

from __future__ import annotations

from rnn_behaviour import config_validation
from rnn_behaviour import evaluate
from rnn_behaviour import parallel
from rnn_behaviour import train
from rnn_behaviour import lab_report
from rnn_behaviour import workdir as workdir_lib
from rnn_behaviour.analysis import run_analysis
from rnn_behaviour.analysis import run_paper
from rnn_behaviour.behaviour import pipeline

MODES = ('train', 'evaluate', 'all', 'fit_behaviour', 'analyse', 'report')


READS_CHECKPOINT = ('evaluate', 'analyse')   # Modes that need a trained network there.


def run(config, workdir: str, mode: str, restart: bool = False) -> None:
  """Runs a mode on a workdir; `all` fits behaviour first when the config trains on a fit.

  The workdir is checked first (a directory that exists or can be created, writable, and for
  evaluate/analyse holding a checkpoint), so that a bad one fails before any work.
  `restart` starts training afresh (train.train's restart).
  """
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
  if mode == 'all' and 'report' in config:
    mode = config.report.get('mode', mode)   # A report config runs its report by default.
  if mode == 'report':
    workdir_lib.check(workdir)
    if parallel.is_chief():
      lab_report.run(config, workdir)
    parallel.barrier('report done')
    return
  workdir_lib.check(workdir, needs_checkpoint=mode in READS_CHECKPOINT)
  if mode == 'fit_behaviour' or (mode == 'all' and config.behaviour.source == 'bns'
                                 and not config.behaviour.fit):
    # One process fits; in a multi-process job the others wait for its outputs.
    if parallel.is_chief():
      pipeline.fit_behaviour(config, workdir)
    parallel.barrier('behaviour fitted')
    if mode == 'fit_behaviour':
      return
  config_validation.validate(config)
  if mode in ('train', 'all'):
    train.train(config, workdir, restart=restart)
  if mode in ('evaluate', 'all', 'analyse'):
    # Evaluation and analysis run on one process (their arrays are small); the others wait.
    if parallel.is_chief():
      _judge(config, workdir, mode)
    parallel.barrier(f'{mode} done')


def _judge(config, workdir: str, mode: str) -> None:
  if mode == 'analyse':
    # Workdirs saved before the paper protocol existed keep today's design-grid analysis.
    if config.analysis.get('protocol', 'design_grid') == 'paper':
      run_paper.analyse(config, workdir)
    else:
      run_analysis.analyse(config, workdir)
    return
  evaluate.evaluate(config, workdir)
