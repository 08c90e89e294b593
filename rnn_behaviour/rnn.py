"""The RNN: Flax cells, the network around them, and its trial unrolled with `jax.lax.scan`.

State x in R^n, one step per time bin (METHOD sec. 4):

  x_{s+1} = (1 - a) x_s + a F(x_s, drive_s) + sigma_s xi_s,   xi_s ~ N(0, I),

where drive_s = U u_s + E e_s is the input and time drive. Inputs are constant within an epoch
and shared by all samples of a display, so U u is computed once per display and epoch; the time
drive is a learned constant in the trial epochs and a projection of a sinusoidal embedding of the
diffusion step in the response epoch, shared by every display. The readout is y = D x with D a
fixed (2, n) matrix with orthonormal rows; its null space is free memory.

Shapes: states (K, S, n) = (displays, samples, units); trajectories are time-major
(time, K, S, n).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import diffusion
from rnn_behaviour import task as task_lib

CELLS = ('rate', 'dendritic')
RESPONSE_NOISES = ('all', 'readout')
ONSETS = ('reset', 'regularise')             # The readout at response onset: a prior draw, or
                                             # the network's own (regularised by the loss).
SOMAS = ('linear', 'softplus')               # Dendritic cell: the unit's output F.
TIME_LEVELS = ('leaves', 'all')              # Dendritic cell: where the time signal enters.
INPUT_PROJECTIONS = ('dense', 'factorised')  # Inputs -> leaves: one matrix, or the authors'
                                             # per-feature factors first.
INITIAL_STATES = ('zeros', 'half_normal')    # x_0 of a trial.
_INITIAL_STATE_STREAM = 1                    # fold_in data of the initial state's key.
NONLINEARITIES = {'tanh': jnp.tanh, 'softplus': jax.nn.softplus, 'relu': jax.nn.relu}


@jax.custom_vjp
def softplus(z):
  """log(1 + e^z), whose backward pass reuses the output: d/dz = 1 - e^{-softplus(z)}."""
  return jnp.logaddexp(z, 0.0)


def _softplus_fwd(z):
  s = softplus(z)
  return s, s


def _softplus_bwd(s, g):
  return (-g * jnp.expm1(-s),)


softplus.defvjp(_softplus_fwd, _softplus_bwd)


class RateCell(nn.Module):
  """F(x, drive) = W phi(x) + drive; the bias lives in the drive."""
  num_units: int
  nonlinearity: str = 'tanh'

  @property
  def drive_size(self) -> int:
    return self.num_units

  @property
  def leaf_drive_size(self) -> int:
    return self.num_units

  @nn.compact
  def __call__(self, x, drive):
    n = self.num_units
    w = self.param('recurrent_kernel', nn.initializers.normal(1.0 / np.sqrt(n)), (n, n))
    return NONLINEARITIES[self.nonlinearity](x) @ w + drive


class DendriticCell(nn.Module):
  """Each unit is a two-level tree of softplus branches (the paper's "dendritic" neuron).

  Unit i has B branches of S leaves. Leaf (i, b, s) receives z = W_leaf x + drive; a branch sums
  its leaves' softplus(z) with learned weights and applies softplus again; the unit sums its
  branches with learned weights:
    F_i = sum_b v_ib softplus(sum_s w_ibs softplus(z_ibs) + c_ib [+ e_ib]) + d_i [+ e_i],
  and with soma='softplus' (the authors' cell) the unit applies softplus too, so F_i >= 0.
  The drive has one entry per leaf (n * B * S: inputs, time signal and the leaf biases); with
  time_levels='all' (the authors' cell) it also has one per branch and one per unit
  (n * B + n more), through which the time signal e reaches every level of the tree. Inputs
  reach the leaves only (`leaf_drive_size`).
  """
  num_units: int
  num_branches: int = 10
  num_subbranches: int = 10
  soma: str = 'linear'
  time_levels: str = 'leaves'

  @property
  def leaf_drive_size(self) -> int:
    return self.num_units * self.num_branches * self.num_subbranches

  @property
  def drive_size(self) -> int:
    if self.time_levels == 'all':
      return self.leaf_drive_size + self.num_units * self.num_branches + self.num_units
    return self.leaf_drive_size

  @nn.compact
  def __call__(self, x, drive):
    n, b, s = self.num_units, self.num_branches, self.num_subbranches
    w_leaf = self.param('leaf_kernel', nn.initializers.normal(1.0 / np.sqrt(n)), (n, n * b * s))
    w_sub = self.param('subbranch_weights', nn.initializers.normal(1.0 / np.sqrt(s)), (n, b, s))
    c = self.param('branch_bias', nn.initializers.zeros, (n, b))
    v = self.param('branch_weights', nn.initializers.normal(1.0 / np.sqrt(b)), (n, b))
    d = self.param('unit_bias', nn.initializers.zeros, (n,))
    if self.time_levels == 'all':
      nbs, nb = n * b * s, n * b
      leaves = softplus(x @ w_leaf + drive[..., :nbs]).reshape(x.shape[:-1] + (n, b, s))
      branch_drive = drive[..., nbs:nbs + nb].reshape(drive.shape[:-1] + (n, b))
      branches = softplus(jnp.sum(leaves * w_sub, axis=-1) + c + branch_drive)
      out = jnp.sum(branches * v, axis=-1) + d + drive[..., nbs + nb:]
    else:
      leaves = softplus(x @ w_leaf + drive).reshape(x.shape[:-1] + (n, b, s))
      branches = softplus(jnp.sum(leaves * w_sub, axis=-1) + c)
      out = jnp.sum(branches * v, axis=-1) + d
    return softplus(out) if self.soma == 'softplus' else out


def orthonormal_rows(key, num_rows: int, num_cols: int):
  """A (num_rows, num_cols) matrix with orthonormal rows (QR of a Gaussian matrix)."""
  q, r = jnp.linalg.qr(jax.random.normal(key, (num_cols, num_rows)))
  return (q * jnp.sign(jnp.diag(r))).T


class DiffusionRNN(nn.Module):
  """Cell, input and time projections, and the fixed readout (collection 'constants').

  Inputs reach the cell's leaves. input_projection='dense': one learned matrix from the whole
  input vector. 'factorised' (the authors' input model): the first M_c * M_r inputs are read as
  the conjunctive code X (M_c cue x M_r report tuning curves) and projected per feature first,
  Z = P_c X P_r^T with P_c (f, M_c), P_r (f, M_r) learned and f = feature_projection_size, then
  Z's f * f entries by a learned matrix to the leaves (no bias); the separate cue channel, when
  the cue has one (config.task.cue_input='channel'), through its own matrix. The time drive reaches every entry of the
  cell's drive (with the dendritic cell's time_levels='all', every level of the tree).
  """
  cell: nn.Module
  time_embedding_size: int = 16
  input_projection_kind: str = 'dense'    # config.model.input_projection.
  stimulus_shape: tuple[int, int] = (0, 0)  # (M_c, M_r), for the 'factorised' projection.
  feature_projection_size: int = 6
  use_cue_channel: bool = True               # False: the cue rides in the conjunctive code.

  def setup(self):
    size = self.cell.drive_size
    leaf_size = self.cell.leaf_drive_size
    self.input_projection = nn.Dense(leaf_size, use_bias=False, name='input_projection')
    if self.input_projection_kind == 'factorised':
      f = self.feature_projection_size
      self.cue_feature_projection = nn.Dense(f, use_bias=False, name='cue_feature_projection')
      self.report_feature_projection = nn.Dense(f, use_bias=False,
                                                name='report_feature_projection')
      if self.use_cue_channel:
        self.cue_channel_projection = nn.Dense(leaf_size, use_bias=False,
                                               name='cue_channel_projection')
    self.time_projection = nn.Dense(size, name='time_projection')
    self.trial_time_drive = self.param('trial_time_drive', nn.initializers.zeros, (size,))
    self.readout = self.variable(
        'constants', 'readout',
        lambda: orthonormal_rows(self.make_rng('params'), 2, self.cell.num_units))

  def project_inputs(self, epoch_inputs):
    """(..., input_size) -> (..., leaf_drive_size): the input drive of the leaves."""
    if self.input_projection_kind != 'factorised':
      return self.input_projection(epoch_inputs)
    m_c, m_r = self.stimulus_shape
    stimulus = epoch_inputs[..., :m_c * m_r].reshape(epoch_inputs.shape[:-1] + (m_c, m_r))
    by_report = self.report_feature_projection(stimulus)               # (..., M_c, f)
    z = self.cue_feature_projection(jnp.swapaxes(by_report, -1, -2))    # (..., f_r, f_c)
    drive = self.input_projection(z.reshape(z.shape[:-2] + (-1,)))
    if self.use_cue_channel:
      drive = drive + self.cue_channel_projection(epoch_inputs[..., m_c * m_r:])
    return drive

  def epoch_drives(self, epoch_inputs):
    """(E, K, input_size) -> (E, K, drive_size): input drive plus the trial time constant."""
    inputs = self.project_inputs(epoch_inputs)
    pad = self.cell.drive_size - self.cell.leaf_drive_size
    if pad:  # Entries of the branches and somata: the time signal's only.
      inputs = jnp.concatenate([inputs, jnp.zeros(inputs.shape[:-1] + (pad,), inputs.dtype)],
                               axis=-1)
    return inputs + self.trial_time_drive

  def response_drives(self, num_steps: int):
    """(T, drive_size): the time drive of diffusion step t at index t - 1."""
    steps = jnp.arange(1, num_steps + 1)
    return self.time_projection(diffusion.step_embedding(steps, self.time_embedding_size))

  def recurrent(self, x, drive):
    """F(x, drive), (..., n)."""
    return self.cell(x, drive)

  def __call__(self, epoch_inputs, x, num_steps: int):
    """Touches every parameter; used by `init`."""
    drives = self.epoch_drives(epoch_inputs)
    return self.recurrent(x, drives[0][:, None, :] + self.response_drives(num_steps)[0])


def make_model(model_config, task_config=None) -> DiffusionRNN:
  """The model a config's `model` block describes (`task` block: the input layout that
  input_projection='factorised' needs)."""
  c = model_config
  if c.cell == 'rate':
    cell = RateCell(num_units=c.num_units, nonlinearity=c.nonlinearity)
  elif c.cell == 'dendritic':
    cell = DendriticCell(num_units=c.num_units, num_branches=c.num_branches,
                         num_subbranches=c.num_subbranches, soma=c.get('soma', 'linear'),
                         time_levels=c.get('time_levels', 'leaves'))
  else:
    raise ValueError(f'config.model.cell must be one of {CELLS}, got {c.cell!r}')
  projection = c.get('input_projection', 'dense')
  if projection == 'factorised':
    if task_config is None or task_config.cueing != 'probe':
      raise ValueError("config.model.input_projection='factorised' needs probe cueing "
                       '(the conjunctive cue x report code)')
    return DiffusionRNN(cell=cell, time_embedding_size=c.time_embedding_size,
                        input_projection_kind=projection,
                        stimulus_shape=(task_config.num_tuning, task_config.num_tuning),
                        feature_projection_size=c.get('feature_projection_size', 6),
                        use_cue_channel=task_config.get('cue_input', 'channel') == 'channel')
  return DiffusionRNN(cell=cell, time_embedding_size=c.time_embedding_size)


@dataclasses.dataclass(frozen=True)
class Network:
  """A model with everything static its dynamics need; its methods are pure in `variables`.

  `variables` is {'params': ..., 'constants': {'readout': (2, n)}}.
  """
  model: DiffusionRNN
  epochs: task_lib.Epochs
  schedule: diffusion.Schedule
  alpha: float = 0.1
  trial_noise: float | None = None       # Default: sqrt(btilde_T), as in the paper.
  response_noise: str = 'all'            # 'all' units, or the 'readout' plane alone.
  onset: str = 'reset'                   # The onset rule (ONSETS), config.diffusion.onset.
  remat: bool = False
  initial_state: str = 'zeros'           # x_0: 'zeros', or 'half_normal' (the authors').

  @property
  def num_units(self) -> int:
    return self.model.cell.num_units

  @property
  def trial_noise_scale(self):
    if self.trial_noise is not None:
      return self.trial_noise
    return jnp.sqrt(self.schedule.posterior_variances[-1])

  def initial_states(self, key, num_displays: int, num_samples: int):
    """x_0 of every trial, (K, S, n).

    'zeros': x_0 = 0. 'half_normal' (the authors'): x_0,i = |z_i| sqrt(1 - abar_T), z ~ N(0, I)
    independently per trial and unit (mean sqrt(2 / pi) sqrt(1 - abar_T) per unit).

    Args:
      key: the trial's key, as passed to `sample` or the loss: not consumed; the draw uses a
        stream folded out of it, so the keys split from it for the trial's noise are unchanged.
      num_displays, num_samples: K and S.
    """
    shape = (num_displays, num_samples, self.num_units)
    if self.initial_state == 'half_normal':
      z = jax.random.normal(jax.random.fold_in(key, _INITIAL_STATE_STREAM), shape)
      return jnp.sqrt(self.schedule.prior_variance) * jnp.abs(z)
    if self.initial_state != 'zeros':
      raise ValueError(f'config.model.initial_state must be one of {INITIAL_STATES}, '
                       f'got {self.initial_state!r}')
    return jnp.zeros(shape)

  def init(self, key, input_size: int):
    dummy_inputs = jnp.zeros((len(task_lib.EPOCH_NAMES), 1, input_size))
    dummy_x = jnp.zeros((1, 1, self.num_units))
    return self.model.init(key, dummy_inputs, dummy_x, self.schedule.num_steps)

  # --- single steps -------------------------------------------------------------------------

  def readout(self, variables, x):
    """y = D x, (..., 2)."""
    return x @ variables['constants']['readout'].T

  def set_readout(self, variables, x, y):
    """Replaces the readout component of x by y: (I - D^T D) x + D^T y."""
    d = variables['constants']['readout']
    return x + (y - x @ d.T) @ d

  def mean_step(self, variables, x, drive):
    """(1 - a) x + a F(x, drive): the noiseless next state."""
    f = self.model.apply(variables, x, drive, method=DiffusionRNN.recurrent)
    return (1.0 - self.alpha) * x + self.alpha * f

  def response_noise_sample(self, variables, key, x):
    """Standard normal state noise of the response epoch: on every unit, or only in the
    readout plane (D^T xi_2), which leaves the null-space memory untouched."""
    if self.response_noise == 'readout':
      return jax.random.normal(key, x.shape[:-1] + (2,), x.dtype) @ variables['constants'][
          'readout']
    return jax.random.normal(key, x.shape, x.dtype)

  def maybe_remat(self, body: Callable) -> Callable:
    """`body` rematerialised in the backward pass when config.train.remat is set (scans over
    steps keep their carries only, and recompute the rest)."""
    return jax.checkpoint(body) if self.remat else body

  # --- epochs -------------------------------------------------------------------------------

  def drives(self, variables, epoch_inputs):
    """Per-epoch drives (E, K, L) and per-diffusion-step response drives (T, L)."""
    epoch_drives = self.model.apply(variables, epoch_inputs, method=DiffusionRNN.epoch_drives)
    response = self.model.apply(variables, self.schedule.num_steps,
                                method=DiffusionRNN.response_drives)
    return epoch_drives, response

  def run_trial(self, variables, epoch_drives, x0, key, record: bool = False):
    """Runs stimulus, delay, cue and post-cue epochs with noise sqrt(btilde_T) on every unit.

    Args:
      variables: network variables.
      epoch_drives: (E, K, L) from `drives`.
      x0: (K, S, n) initial states.
      key: PRNG key for the state noise.
      record: also return the trajectory.

    Returns:
      x (K, S, n) at response onset, and the trajectory (trial_length, K, S, n) or None.
    """
    sigma = self.trial_noise_scale
    x, trajectory = x0, []
    keys = jax.random.split(key, len(self.epochs.lengths) - 1)
    for e, length in enumerate(self.epochs.lengths[:-1]):
      drive = epoch_drives[e][:, None, :]

      def body(x, k, drive=drive):
        x = self.mean_step(variables, x, drive) + sigma * jax.random.normal(k, x.shape, x.dtype)
        return x, x if record else None

      x, states = jax.lax.scan(self.maybe_remat(body), x, jax.random.split(keys[e], length))
      trajectory.append(states)
    return x, (jnp.concatenate(trajectory) if record else None)

  def sample_response(self, variables, response_drives, x, key, record: bool = False):
    """Free-running reverse diffusion, steps t = T..1, noise sqrt(btilde_t) (0 at t = 1).

    Returns the final states (K, S, n) and the trajectory (T, K, S, n) or None.
    """
    sigmas = diffusion.reverse_noise_scales(self.schedule)

    def body(x, inputs):
      drive, sigma, k = inputs
      x = self.mean_step(variables, x, drive) + sigma * self.response_noise_sample(variables, k, x)
      return x, x if record else None

    steps = (response_drives[::-1], sigmas[::-1],
             jax.random.split(key, self.schedule.num_steps))
    return jax.lax.scan(self.maybe_remat(body), x, steps)

  def onset_reset(self, variables, x, key):
    """Sets the readout to a fresh draw from the prior N(0, (1 - abar_T) I)."""
    y = jnp.sqrt(self.schedule.prior_variance) * jax.random.normal(key, x.shape[:-1] + (2,))
    return self.set_readout(variables, x, y)

  def sample(self, variables, epoch_inputs, key, num_samples: int, record: bool = False):
    """Samples responses: the whole trial run freely with its noise, from `initial_states`.

    Args:
      variables: network variables.
      epoch_inputs: (E, K, input_size) from `task.epoch_inputs`.
      key: PRNG key.
      num_samples: S samples per display.
      record: also return the trajectory.

    Returns:
      responses (K, S) angles in [-pi, pi), and the trajectory (total_steps, K, S, n) or None.

    The onset rule is the network's own (`onset`): 'reset' sets the readout to a prior draw at
    response onset; 'regularise' leaves the network's own readout.
    """
    key_trial, key_onset, key_response = jax.random.split(key, 3)
    epoch_drives, response_drives = self.drives(variables, epoch_inputs)
    x0 = self.initial_states(key, epoch_inputs.shape[1], num_samples)
    x, trial_trajectory = self.run_trial(variables, epoch_drives, x0, key_trial, record)
    if self.onset == 'reset':
      x = self.onset_reset(variables, x, key_onset)
    x, response_trajectory = self.sample_response(variables, response_drives, x, key_response,
                                                  record)
    responses = diffusion.point_to_angle(self.readout(variables, x))
    trajectory = (jnp.concatenate([trial_trajectory, response_trajectory]) if record else None)
    return responses, trajectory


def make_network(config) -> Network:
  """The network a config describes."""
  return Network(model=make_model(config.model, config.task), epochs=task_lib.epochs_from_config(config),
                 schedule=diffusion.schedule_from_config(config.diffusion),
                 alpha=float(config.model.alpha),
                 trial_noise=None if config.model.trial_noise < 0 else float(config.model.trial_noise),
                 response_noise=config.diffusion.response_noise,
                 onset=config.diffusion.onset,
                 remat=bool(config.train.remat),
                 initial_state=config.model.get('initial_state', 'zeros'))


Variables = Any
