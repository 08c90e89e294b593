"""Training objectives, each built by a factory from the config (METHOD secs. 5 and 6).

Every loss has the signature `loss_fn(params, constants, batch, key) -> (loss, metrics)`, with
`batch` a `Batch` of displays and their surrogate responses.
"""

from __future__ import annotations

from typing import Callable

import flax
import jax
import jax.numpy as jnp

from rnn_behaviour import diffusion
from rnn_behaviour import rnn
from rnn_behaviour import sampling
from rnn_behaviour import task as task_lib

OBJECTIVES = ('diffusion', 'task_optimal', 'behaviour_mse', 'moment_matching', 'free_running')
ONSET_PENALTIES = ('moments', 'mean_norm')     # Today's mean-and-covariance mismatch, or the
                                               # authors' norm of the mean readout.
STATE_PENALTIES = ('mean_square', 'mean_norm')  # Today's mean x^2 over every step, or the
                                                # authors' mean ||x|| (trial epochs, response
                                                # null space).

LossFn = Callable[..., tuple[jnp.ndarray, dict]]


@flax.struct.dataclass
class Batch:
  """displays: K displays; responses: (K, S) surrogate responses, radians."""
  displays: task_lib.Displays
  responses: jnp.ndarray


def sample_batch(key, config, behaviour_model) -> Batch:
  """K fresh displays (config.train.displays_per_batch) with S surrogate responses each."""
  key_displays, key_responses = jax.random.split(key)
  displays = task_lib.displays_from_config(key_displays, config.train.displays_per_batch,
                                           config.task)
  responses = behaviour_model.sample_responses(key_responses, displays,
                                               config.train.samples_per_display)
  return Batch(displays=displays, responses=responses)


def onset_prior_penalty(y_onset, prior_variance):
  """Mismatch of the readout at response onset with the prior N(0, v I), per display.

  y_onset: (K, S, 2). For each display, ||mean||^2 + ||cov - v I||_F^2 across its samples,
  averaged over displays.
  """
  mean = jnp.mean(y_onset, axis=1)
  centred = y_onset - mean[:, None, :]
  cov = jnp.einsum('ksi,ksj->kij', centred, centred) / y_onset.shape[1]
  cov_error = cov - prior_variance * jnp.eye(2)
  return jnp.mean(jnp.sum(mean**2, -1) + jnp.sum(cov_error**2, axis=(-2, -1)))


def safe_norm(x, axis=-1):
  """||x|| along `axis`, with gradient 0 (not NaN) where x = 0."""
  sq = jnp.sum(x**2, axis=axis)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def onset_mean_norm_penalty(y_onset):
  """The authors' onset penalty: mean over displays of ||mean over samples of D x_onset||.

  y_onset: (K, S, 2) -> scalar. Not squared, and no covariance term: it pulls each display's
  mean onset readout to the origin and leaves its spread alone.
  """
  return jnp.mean(safe_norm(jnp.mean(y_onset, axis=1)))


def onset_penalty(config, network: rnn.Network, variables, x_onset):
  """The penalty config.diffusion.onset_penalty names, on the onset states (K, S, n)."""
  y_onset = network.readout(variables, x_onset)
  if config.diffusion.get('onset_penalty', 'moments') == 'mean_norm':
    return onset_mean_norm_penalty(y_onset)
  return onset_prior_penalty(y_onset, network.schedule.prior_variance)


def null_space(variables, x):
  """(I - D^T D) x, (..., n): the state with its readout component removed."""
  d = variables['constants']['readout']
  return x - (x @ d.T) @ d


def mean_norm_state_penalty(epochs, trial_states, response_null_norms):
  """The authors' activity penalty: sum over groups of the group's mean ||x||.

  The groups are each trial epoch (stimulus, delay, cue, post-cue; empty epochs skipped) and the
  response epoch's null-space component (I - D^T D) x: as in their training loop, each group
  contributes its mean over steps, displays and samples of the state's Euclidean norm.

  Args:
    epochs: the trial's `task.Epochs`.
    trial_states: (trial_length, K, S, n), the states after each trial step.
    response_null_norms: (T,) per response step, the mean of ||(I - D^T D) x|| over (K, S).
  """
  norms = safe_norm(trial_states)
  total, start = 0.0, 0
  for length in epochs.lengths[:-1]:
    if length:
      total = total + jnp.mean(norms[start:start + length])
    start += length
  return total + jnp.mean(response_null_norms)


def teacher_forced_response(network: rnn.Network, variables, response_drives, x, ys, y0, key,
                            null_norms: bool = False):
  """The response epoch under teacher forcing, t = T..1, with its denoising errors.

  At step t the readout is overwritten with y_t, the network takes one noisy step, and the
  readout of its mean, m_theta(t) = (1 - a) y_t + a D F(x, e_t), is scored against the
  posterior mean mu_t(y_t, y0).

  Args:
    network: the network.
    variables: its variables.
    response_drives: (T, L).
    x: (K, S, n) states at response onset.
    ys: (T, K, S, 2) forward chain y_1..y_T.
    y0: (K, S, 2) data points.
    key: PRNG key for the state noise.

    null_norms: also return, per step, the mean over (K, S) of ||(I - D^T D) x|| after the step.

  Returns:
    per-step mean squared errors (T,) in step order t = 1..T, mean squared states (T,), and
    with null_norms the mean null-space norms (T,).
  """
  mus = diffusion.posterior_means(network.schedule, y0, ys)
  sigmas = diffusion.reverse_noise_scales(network.schedule)

  def body(x, inputs):
    drive, sigma, y_t, mu_t, k = inputs
    x = network.set_readout(variables, x, y_t)
    mean = network.mean_step(variables, x, drive)
    error = jnp.mean(jnp.sum((network.readout(variables, mean) - mu_t)**2, axis=-1))
    x = mean + sigma * network.response_noise_sample(variables, k, x)
    if null_norms:
      return x, (error, jnp.mean(x**2),
                 jnp.mean(safe_norm(null_space(variables, x))))
    return x, (error, jnp.mean(x**2))

  steps = (response_drives[::-1], sigmas[::-1], ys[::-1], mus[::-1],
           jax.random.split(key, network.schedule.num_steps))
  _, outputs = jax.lax.scan(network.maybe_remat(body), x, steps)
  return tuple(o[::-1] for o in outputs)


def make_diffusion_loss(config, network: rnn.Network) -> LossFn:
  """The fixed-variance diffusion ELBO under teacher forcing (METHOD sec. 5).

  loss = denoise_scale * mean_t,samples ||m_theta(t) - mu_t||^2
         + state_weight * state penalty
         + onset_weight * onset penalty      (onset == 'regularise' only)

  denoise_scale (config.objective.denoise_scale, default 1): the authors score the kernel
  f = (m - (1 - a) y_t) / a against its target (mu_t - (1 - a) y_t) / a, averaged over the two
  readout dimensions, which is 1 / (2 a^2) ||m - mu_t||^2: 50 at a = 0.1.
  State penalty (config.objective.state_penalty): 'mean_square', mean ||x||^2 / n over every
  step; 'mean_norm', the authors' `mean_norm_state_penalty`. Onset penalty
  (config.diffusion.onset_penalty): 'moments', `onset_prior_penalty`; 'mean_norm', the
  authors' `onset_mean_norm_penalty`. Trials start from `network.initial_states`.
  """
  radius = config.diffusion.radius
  onset = network.onset
  onset_weight = config.diffusion.onset_weight
  state_weight = config.objective.state_weight
  denoise_scale = float(config.objective.get('denoise_scale', 1.0))
  state_penalty = config.objective.get('state_penalty', 'mean_square')
  task_config = config.task

  def loss_fn(params, constants, batch: Batch, key):
    variables = {'params': params, 'constants': constants}
    key_chain, key_trial, key_response = jax.random.split(key, 3)
    epoch_inputs = task_lib.epoch_inputs_from_config(batch.displays, task_config)
    epoch_drives, response_drives = network.drives(variables, epoch_inputs)
    num_displays, num_samples = batch.responses.shape
    x0 = network.initial_states(key, num_displays, num_samples)
    x, trial_states = network.run_trial(variables, epoch_drives, x0, key_trial, record=True)
    y0 = diffusion.angle_to_point(batch.responses, radius)
    ys = diffusion.forward_chain(key_chain, network.schedule, y0)
    outputs = teacher_forced_response(network, variables, response_drives, x, ys, y0,
                                      key_response, null_norms=state_penalty == 'mean_norm')
    errors, response_sq = outputs[:2]
    denoise = jnp.mean(errors)
    if state_penalty == 'mean_norm':
      state = mean_norm_state_penalty(network.epochs, trial_states, outputs[2])
      metrics = {'denoise': denoise, 'state_norm': state}
    else:
      state = (jnp.sum(jnp.mean(trial_states**2, axis=(1, 2, 3))) + jnp.sum(response_sq)) / (
          trial_states.shape[0] + response_sq.shape[0])
      metrics = {'denoise': denoise, 'state_sq': state}
    loss = (denoise if denoise_scale == 1.0 else denoise_scale * denoise) + state_weight * state
    if onset == 'regularise':
      penalty = onset_penalty(config, network, variables, x)
      loss = loss + onset_weight * penalty
      metrics['onset'] = penalty
    metrics['loss'] = loss
    return loss, metrics

  return loss_fn


def _free_run(sample: sampling.Sampler, variables, batch: Batch, key):
  """The whole trial run freely (reparameterised noise) through the seam: responses (K, S)
  and states (T_all, K, S, n)."""
  return sample(variables, batch.displays, key, batch.responses.shape[1], record=True)


def make_readout_mse_loss(config, network: rnn.Network, target: str) -> LossFn:
  """MSE of the free-running readout to a target point over the response epoch (METHOD 6).

  target='task_optimal': the cued item's report feature, rho (cos r_k, sin r_k).
  target='behaviour_mse': each sample's surrogate response, rho (cos y, sin y); the optimum is
  the conditional mean, a single mode.
  """
  radius = config.diffusion.radius
  state_weight = config.objective.state_weight

  sample = sampling.make_sampler(config, network)
  def loss_fn(params, constants, batch: Batch, key):
    variables = {'params': params, 'constants': constants}
    _, states = _free_run(sample, variables, batch, key)
    if target == 'task_optimal':
      angle = jnp.broadcast_to(batch.displays.cued_report()[:, None], batch.responses.shape)
    else:
      angle = batch.responses
    goal = diffusion.angle_to_point(angle, radius)
    readout = network.readout(variables, states[network.epochs.trial_length:])
    mse = jnp.mean(jnp.sum((readout - goal)**2, axis=-1))
    state_sq = jnp.mean(states**2)
    loss = mse + state_weight * state_sq
    return loss, {'loss': loss, 'readout_mse': mse, 'state_sq': state_sq}

  return loss_fn


def make_free_running_loss(config, network: rnn.Network) -> LossFn:
  """The authors' `train_as_rnn` stage: the free-running readout regressed on each sample's data.

  The whole trial runs freely with its noise (no teacher forcing; from `network.initial_states`,
  with the onset rule config.diffusion.onset), and every response step's readout is scored
  against that sample's own data point y0 = rho (cos y, sin y), y its surrogate response,
  averaged over the two readout dimensions:

    loss = mean_{t, K, S} (1/2) ||D x_t - y0||^2
           + state_weight * state penalty      (as in the diffusion loss)
           + onset_weight * onset penalty      (onset == 'regularise' only)

  x_t is the state after reverse step t = T..1. Gradients flow through the reparameterised noise.
  It differs from 'task_optimal' (target the cued item's exact point, summed over dimensions, a
  mean x^2 penalty, no onset penalty) and from 'behaviour_mse' (the same target, summed over
  dimensions, no onset penalty) only in scale and penalties when the data have no swaps; the
  authors ran it on swap-free data.
  """
  radius = config.diffusion.radius
  onset = network.onset
  onset_weight = config.diffusion.onset_weight
  state_weight = config.objective.state_weight
  state_penalty = config.objective.get('state_penalty', 'mean_square')
  trial_length = network.epochs.trial_length

  sample = sampling.make_sampler(config, network)
  def loss_fn(params, constants, batch: Batch, key):
    variables = {'params': params, 'constants': constants}
    _, states = _free_run(sample, variables, batch, key)
    goal = diffusion.angle_to_point(batch.responses, radius)
    readout = network.readout(variables, states[trial_length:])
    mse = 0.5 * jnp.mean(jnp.sum((readout - goal)**2, axis=-1))
    if state_penalty == 'mean_norm':
      null_norms = jnp.mean(safe_norm(null_space(variables, states[trial_length:])),
                            axis=(1, 2))
      state = mean_norm_state_penalty(network.epochs, states[:trial_length], null_norms)
      metrics = {'readout_mse': mse, 'state_norm': state}
    else:
      state = jnp.mean(states**2)
      metrics = {'readout_mse': mse, 'state_sq': state}
    loss = mse + state_weight * state
    if onset == 'regularise':
      penalty = onset_penalty(config, network, variables, states[trial_length - 1])
      loss = loss + onset_weight * penalty
      metrics['onset'] = penalty
    metrics['loss'] = loss
    return loss, metrics

  return loss_fn


def trig_moments(angles):
  """Per display (first axis), the mean of cos, sin, cos 2, sin 2 over samples: (K, 4)."""
  return jnp.stack([jnp.mean(jnp.cos(angles), 1), jnp.mean(jnp.sin(angles), 1),
                    jnp.mean(jnp.cos(2 * angles), 1), jnp.mean(jnp.sin(2 * angles), 1)], -1)


def soft_swap_rate(angles, displays: task_lib.Displays, sharpness: float = 10.0):
  """Differentiable swap rate: softmax over items of sharpness * cos(y - r_j), summed over
  the non-targets and averaged over all responses."""
  responsibility = jax.nn.softmax(sharpness * jnp.cos(angles[..., None]
                                                      - displays.report[:, None, :]), axis=-1)
  mask = task_lib.nontarget_mask(displays)[:, None, :]
  return jnp.mean(jnp.sum(jnp.where(mask, responsibility, 0.0), axis=-1))


def make_moment_matching_loss(config, network: rnn.Network) -> LossFn:
  """Matches low-order statistics of free-running responses to the surrogate's (METHOD 6).

  loss = mean_K ||m(net) - m(surrogate)||^2  (first and second trigonometric moments)
         + (soft swap rate(net) - soft swap rate(surrogate))^2
         + mean (|D x_final| - rho)^2 / rho^2   (keeps the readout on the response circle)
  Gradients flow through the network's reparameterised noise.
  """
  radius = config.diffusion.radius
  state_weight = config.objective.state_weight

  sample = sampling.make_sampler(config, network)
  def loss_fn(params, constants, batch: Batch, key):
    variables = {'params': params, 'constants': constants}
    responses, states = _free_run(sample, variables, batch, key)
    moments = jnp.mean(jnp.sum((trig_moments(responses) - trig_moments(batch.responses))**2, -1))
    swap = (soft_swap_rate(responses, batch.displays)
            - soft_swap_rate(batch.responses, batch.displays))**2
    norm = jnp.linalg.norm(network.readout(variables, states[-1]), axis=-1)
    radial = jnp.mean((norm - radius)**2) / radius**2
    state_sq = jnp.mean(states**2)
    loss = moments + swap + radial + state_weight * state_sq
    return loss, {'loss': loss, 'moments': moments, 'swap': swap, 'radial': radial,
                  'state_sq': state_sq}

  return loss_fn


def make_loss_fn(config, network: rnn.Network) -> LossFn:
  """The loss config.objective.name names."""
  name = config.objective.name
  if name == 'diffusion':
    return make_diffusion_loss(config, network)
  if name in ('task_optimal', 'behaviour_mse'):
    return make_readout_mse_loss(config, network, name)
  if name == 'moment_matching':
    return make_moment_matching_loss(config, network)
  if name == 'free_running':
    return make_free_running_loss(config, network)
  raise ValueError(f'config.objective.name must be one of {OBJECTIVES}, got {name!r}')
