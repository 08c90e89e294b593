"""Default config: a small run that trains and evaluates on a 2-core CPU in minutes.

Two items with locations on the 8-point grid of Bays et al. (2009), continuous colours; a
parametric swap function of cue distance generates the surrogate responses.
"""

import ml_collections
import numpy as np


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.task = ml_collections.ConfigDict(dict(
      num_items=2,
      cue_grid=8,                    # 0: continuous cue feature; G: G evenly spaced values.
      report_grid=0,
      min_separation_cue=np.pi / 4,
      min_separation_report=np.pi / 4,
      cueing='probe',                # 'probe' (by cue feature) or 'index' (by item index).
      num_tuning=16,                 # M von Mises tuning curves per feature.
      tuning_concentration=5.0,      # kappa_in.
      cue_input='channel',           # 'channel': the cue code in its own input channel;
                                     # 'conjunctive' (probe cueing, the authors'): code(c_k) (x) 1
                                     # in the stimulus's conjunctive code.
      epochs=ml_collections.ConfigDict(dict(stimulus=5, delay=15, cue=5, post_cue=1)),
  ))

  # Where surrogate responses come from: 'parametric' (below) or 'bns' (a fit in `fit`).
  config.behaviour = ml_collections.ConfigDict(dict(
      source='parametric',
      swap_kind='gaussian',          # 'gaussian': f(d) = -d^2/(2 w) + b; 'flat': f = b; 'none'.
      swap_width=1.5,
      swap_bias=-1.0,
      guess_logit=-3.0,
      kappa=8.0,
      fit='',                        # Workdir of a behavioural fit when source='bns'.
      signature='full',              # Train on 'full' behaviour, or a limited signature:
                                     # 'no_swaps', or 'flat' (the mean swap rate everywhere).
  ))

  config.model = ml_collections.ConfigDict(dict(
      cell='rate',                   # 'rate': W phi(x) + U u + b; 'dendritic': branch trees.
      num_units=64,
      nonlinearity='tanh',           # Rate cell's phi: 'tanh', 'softplus' or 'relu'.
      num_branches=10,               # Dendritic cell: first-level branches per unit ...
      num_subbranches=10,            # ... and leaves per branch.
      alpha=0.1,                     # dt / tau.
      trial_noise=0.0,               # State noise s.d. in trial epochs; <0: sqrt(btilde_T),
                                     # about 0.55, the paper's. Noise blurs the remembered
                                     # locations, and a CPU-sized run then learns a flatter
                                     # swap curve (0.05: max bin error 0.065 at 10k steps).
      time_embedding_size=16,        # Sinusoidal embedding of the diffusion step.
      soma='linear',                 # Dendritic cell's unit output: 'linear', or 'softplus'
                                     # (the authors': F >= 0).
      time_levels='leaves',          # Dendritic cell: the time signal at the 'leaves' only, or
                                     # at 'all' levels of the tree (the authors').
      input_projection='dense',      # Inputs -> leaves: 'dense' (one matrix), or 'factorised'
                                     # (probe cueing, the authors'): the conjunctive code's cue
                                     # and report axes each projected to
      feature_projection_size=6,     # this many, then the product to the leaves.
      initial_state='zeros',         # x_0: 'zeros', or 'half_normal' (the authors'):
                                     # |N(0, 1)| sqrt(1 - abar_T) per unit, in training and
                                     # sampling alike.
  ))

  config.diffusion = ml_collections.ConfigDict(dict(
      num_steps=40,                  # T, also the response epoch's length.
      beta_min=0.01,
      beta_max=0.30,
      radius=2.5,                    # rho: y0 = rho (cos theta, sin theta).
      onset='reset',                 # 'reset': readout set to a prior draw at response onset;
                                     # 'regularise': penalise its mismatch with the prior.
      onset_weight=1.0,
      onset_penalty='moments',       # 'moments': ||mean||^2 + ||cov - (1 - abar_T) I||_F^2 per
                                     # display; 'mean_norm' (the authors'): ||mean|| per display.
      response_noise='readout',      # Reverse-step noise on 'all' units or the 'readout' plane.
  ))

  config.objective = ml_collections.ConfigDict(dict(
      name='diffusion',
      state_weight=1e-4,             # Weak penalty on the state (state_penalty).
      state_penalty='mean_square',   # 'mean_square': mean ||x||^2 / n over every step;
                                     # 'mean_norm' (the authors'): mean ||x|| per trial epoch plus
                                     # the response's null-space mean ||(I - D^T D) x||, summed.
      denoise_scale=1.0,             # Diffusion loss: scale * mean ||m - mu||^2; the authors'
                                     # kernel target is 1 / (2 alpha^2): 50.
  ))

  config.train = ml_collections.ConfigDict(dict(
      num_steps=10000,
      displays_per_batch=64,
      samples_per_display=16,
      learning_rate=1e-2,
      schedule='cosine',             # 'cosine': warmup, cosine decay to a tenth; 'constant':
                                     # warmup, then the peak (the authors' Adam 1e-3).
      warmup_steps=200,
      grad_clip=1.0,                 # Global-norm clipping (0: none, as the authors ran).
      init_optimizer=False,          # With init_from: continue from the source's Adam state
                                     # (the authors resumed stages with it) instead of fresh.
      init_member=-1,                # With init_from an ensemble: >= 0 starts this single run
                                     # from that member (-1: the same ensemble size).
      displays_per_chunk=0,          # >0: accumulate gradients over chunks of displays.
      remat=True,                    # Recompute the scan body in the backward pass.
      log_every=100,
      checkpoint_every=1000,
      keep_checkpoints=3,
      ensemble_size=1,               # E > 1: train seeds config.seed + 0..E-1 in one program.
      init_from='',                  # A workdir whose final parameters start this run (the
                                     # curriculum's previous stage); the optimiser starts fresh.
      decay_steps=0,                 # The cosine schedule's length (0: num_steps). To extend a
                                     # run keeping its schedule, set it to the old num_steps.
      divergence_factor=100.0,       # Diverged: loss > level + factor |level| (level: the
      divergence_patience=20,        # running loss) this many steps in a row; 0 disables.
      divergence_window=100,         # Steps the running loss level averages over.
  ))

  # Devices (rnn_behaviour/parallel.py): a ('members', 'displays') mesh. The display axis of
  # every batch is sharded over num_devices / member_shards devices, an ensemble's members over
  # member_shards. Any layout computes the same numbers to float tolerance.
  config.parallel = ml_collections.ConfigDict(dict(
      num_devices=0,                 # 0: every visible device (all hosts'); N: the first N.
      member_shards=1,               # Mesh size along the ensemble member axis.
      cpu_devices=2,                 # The entry point splits a CPU host into this many JAX
                                     # devices (0: JAX's default, one): XLA runs one device's
                                     # step on about one core, so 2 use both of a laptop's.
  ))

  config.eval = ml_collections.ConfigDict(dict(
      seed=1234,
      num_displays=256,
      samples_per_display=256,
      num_cue_bins=4,
      num_plot_displays=6,
      kde_concentration=20.0,        # Von Mises kernel for held-out log-likelihoods.
      bns_svi_steps=1500,            # BNS fitted to network and surrogate responses (0: off),
      bns_samples_per_display=32,    # on at most this many responses a display.
  ))

  # --mode=analyse: the network recorded on a grid of two-item displays (METHOD sec. 8).
  config.analysis = ml_collections.ConfigDict(dict(
      protocol='paper',              # 'paper': the authors' protocol (analysis/paper_protocol.py,
                                     # writes analysis_paper/); 'design_grid': one cue pair,
                                     # additive bin means of the true colours (analysis/).
      seed=7,
      num_bins=8,                    # Report-feature bins per item.
      cue_separation=np.pi / 4,      # The two items' cue features (locations) are 0 and this:
                                     # adjacent locations make the most swaps to decode.
      samples_per_display=32,        # Trials a display (the paper protocol's probe cueing too).
      num_bootstrap=100,
      num_shuffles=20,
      num_fixed_point_starts=64,
      # The paper protocol's plane alignment (analysis/paper_protocol.py), as
      # 'authors': their notebook's recipe: each trial's mean over units subtracted in the
      #   readout's null space, PCA(3) over all of a pair's trials, empty colour bins kept as
      #   zero rows, the post-cue step skipped; cue pairs on a pair_grid-point grid (the task's
      #   cue grid when it has one), every separation from min_separation_cue to the last below
      #   pi at every grid rotation; report values on the same grid (the task's report grid if
      #   any); 32 samples a display (index cueing: one 180-degree pair, 64 samples);
      # 'ours': the protocol before issue 20: no unit-mean subtraction, empty bins left out,
      #   the post-cue step kept; pairs at min_separation_cue + k pair_distance_step below pi
      #   (on a cue grid: its multiples up to pi) at 4 rotations; 12 report values.
      paper_variant='authors',
      pair_grid=24,                  # 'authors': cue (and report) grid of the pairs.
      pair_distance_step=np.pi / 12, # 'ours': the step between analysed cue distances.
      pair_rotations=0,              # Positions of each pair's first cue; 0: the variant's own
                                     # (authors: every grid point; ours: 4).
      report_values=0,               # Report grid per pair: all pairs of these, each cued;
                                     # 0: the variant's own (authors: pair_grid; ours: 12).
      index_samples_per_display=0,   # Index cueing's samples a display; 0: the variant's own
                                     # (authors: 64; ours: samples_per_display).
      reported_bins=16,              # Bins of the reported colour for each plane.
      swap_displays=128,             # Displays of the nearest pairs decoded for swap timing.
  ))
  return config
