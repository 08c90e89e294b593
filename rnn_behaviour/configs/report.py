"""From a lab's trial file to a report it can share: `--mode=report` (the default mode here).

  python -m rnn_behaviour.main --config=rnn_behaviour/configs/report.py \
      --config.data.path=TRIALS --workdir=DIR

TRIALS is a lab's CSV (add --config.data.format=csv, see configs/fit_csv.py) or the Bays 2009
file (the default format). The run (rnn_behaviour/lab_report/): split the trials into fitting
and held-out ones; fit the mixtures and BNS to the fitting trials; for each set size in
`report.set_sizes` train an ensemble of diffusion networks (config.train.ensemble_size seeds in
one program) and one moment-matching baseline on the BNS posterior predictive; evaluate them
against the held-out real trials; run the paper's mechanism analyses on every member (two-item
displays only); write `DIR/report/index.html` (one self-contained file) and its tables as CSV.
Every stage is skipped when finished, so a second call resumes.

Sized for a 2-core laptop CPU (README, "Report"). `report.py:paper` is the paper's scale for an
accelerator: the paper's network and batch, 20,000 steps, full fits and analyses.
"""

import ml_collections

from rnn_behaviour.configs import fit_bays2009
from rnn_behaviour.configs import paper as paper_config


def report_block():
  return ml_collections.ConfigDict(dict(
      mode='report',                 # The entry point's mode when --mode is not given.
      set_sizes=(2, 4),              # Set sizes to train networks on (each in the data).
      heldout_fraction=0.2,          # Share of each set size's trials kept out of the fit,
      split_seed=0,                  # drawn with this seed; they judge every model.
      baseline='moment_matching',    # The baseline objective ('' : none).
      baseline_steps=750,            # Its training steps (0: config.train.num_steps).
      swap_tolerance=0.05,           # A member has learned cue selection when its held-out
                                     # swap rate is within this of its target's.
      example_displays=6,            # Held-out trials drawn in the response-distribution figure.
      samples_per_trial=64,          # Network and BNS responses per held-out trial.
      title='',                      # '': the data file's name.
      selection=selection_block(),
  ))


def selection_block():
  """The path by which the diffusion ensemble learns to select the cued item under the paper's
  preparatory noise (rnn_behaviour/lab_report/stages.py; the curriculum measured in
  docs/results_selection.md): task-optimal in the short shape (delay 1, T = 5) ->
  diffusion on no swaps in the short shape -> the BNS posterior predictive in the full shape.
  Each stage ends when its held-out swap rate is within report.swap_tolerance of its target's
  (task-optimal: at most that far above) in `members` of the ensemble, checked every
  `check_every` steps; the last stage's budget is config.train.num_steps."""
  return ml_collections.ConfigDict(dict(
      select_steps=1500,             # Budget of the task-optimal short-shape stage, trained
                                     # whole (0: no path; the ensemble learns the BNS from
                                     # scratch). Stopped at its first met check (step 1250,
                                     # swap rates 0.025 / 0.093 / 0.072), the next stage kept
                                     # only 0.14-0.18 (Bays 2009, 2026-12-01).
      short_steps=1500,              # The short-shape diffusion stage, trained whole (stopped
                                     # at its first check, the full shape lost selection).
      scale_by_set_size=True,        # The two budgets above are for 2 items; N items get N/2
                                     # times as many steps (at set size 4 and 1,500 steps the
                                     # task-optimal stage reached swap rates 0.16-0.20, still
                                     # falling, against 0.09 for no swaps).
      displays_per_batch=64,         # The short-shape stages' batch (x train.samples_per_
                                     # display), as in the curriculum's measurements.
      check_every=250,               # Steps between checks of cue selection.
      min_steps=250,                 # No stage ends before this many steps.
      num_displays=64,               # Held-out displays of a check,
      samples_per_display=64,        # and samples on each.
      members=2 / 3,                 # Share of the ensemble that must meet a criterion.
  ))


def get_config(variant: str = ''):
  """The report's config; `variant='paper'` (`report.py:paper`) for accelerators."""
  if variant not in ('', 'laptop', 'paper'):
    raise ValueError(f'report.py: unknown variant {variant!r} (use report.py or report.py:paper)')
  config = paper_config.get_config() if variant == 'paper' else fit_bays2009.get_config()
  if variant == 'paper':
    config.data = fit_bays2009.data_block()
    config.fit = fit_bays2009.fit_block()
  config.report = report_block()
  config.behaviour.source = 'bns'
  config.behaviour.fit = ''          # Set by the report: DIR/behaviour.
  config.task.cue_grid = 8           # Bays 2009: 8 locations, pi/4 apart.
  config.task.min_separation_cue = 3.141592653589793 / 4
  config.train.ensemble_size = 3
  config.model.trial_noise = -1.0    # The paper's preparatory noise, sqrt(btilde_T).
  config.eval.bns_svi_steps = 0      # The report judges on the real trials instead.
  if variant == 'paper':
    config.report.baseline_steps = 0
    config.report.selection.update(select_steps=20000, short_steps=20000, check_every=1000,
                                   min_steps=1000)
    config.fit.num_posterior_samples = 1000
    config.analysis.samples_per_display = 64
    return config
  # Laptop-sized (the README's Report section says what it measured). One set size: at set size
  # 4 the laptop budget left every network at chance (held-out swap rate 0.74 against the
  # BNS's 0.31; Bays 2009, 2026-12-01); --config.report.set_sizes=2,4 asks for both.
  config.report.set_sizes = (2,)
  config.fit.svi_steps = 1500
  config.fit.cv_folds = 0            # The report does not need the k-fold model comparison.
  config.fit.compare_dimensions = []
  config.fit.num_posterior_samples = 400
  config.fit.ppc_draws = 100
  # The last stage's budget and batch (it ends when learned): at 1,500 steps of 32 displays the
  # ensemble's swap rate levelled at 0.16-0.18 against the BNS's 0.064.
  config.train.num_steps = 3000
  config.train.displays_per_batch = 64
  config.train.samples_per_display = 16
  config.train.warmup_steps = 100
  config.train.checkpoint_every = 500
  config.train.log_every = 50
  config.eval.num_displays = 128
  config.eval.samples_per_display = 128
  config.analysis.pair_rotations = 2
  config.analysis.samples_per_display = 16
  config.analysis.num_bootstrap = 50
  config.analysis.num_shuffles = 10
  config.analysis.swap_displays = 96
  return config
