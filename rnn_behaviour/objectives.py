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
from rnn_behaviour import task as task_lib

OBJECTIVES = ('diffusion', 'task_optimal', 'behaviour_mse', 'moment_matching')
ONSETS = ('reset', 'regularise')

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


def teacher_forced_response(network: rnn.Network, variables, response_drives, x, ys, y0, key):
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

  Returns:
    per-step mean squared errors (T,) in step order t = 1..T, and mean squared states (T,).
  """
  mus = diffusion.posterior_means(network.schedule, y0, ys)
  sigmas = diffusion.reverse_noise_scales(network.schedule)

  def body(x, inputs):
    drive, sigma, y_t, mu_t, k = inputs
    x = network.set_readout(variables, x, y_t)
    mean = network.mean_step(variables, x, drive)
    error = jnp.mean(jnp.sum((network.readout(variables, mean) - mu_t)**2, axis=-1))
    x = mean + sigma * network.response_noise_sample(variables, k, x)
    return x, (error, jnp.mean(x**2))

  steps = (response_drives[::-1], sigmas[::-1], ys[::-1], mus[::-1],
           jax.random.split(key, network.schedule.num_steps))
  _, (errors, sq_states) = jax.lax.scan(network._maybe_remat(body), x, steps)
  return errors[::-1], sq_states[::-1]


def make_diffusion_loss(config, network: rnn.Network) -> LossFn:
  """The fixed-variance diffusion ELBO under teacher forcing (METHOD sec. 5).

  loss = mean_t,samples ||m_theta(t) - mu_t||^2
         + state_weight * mean ||x||^2 / n  (all steps)
         + onset_weight * onset mismatch     (onset == 'regularise' only)
  """
  radius = config.diffusion.radius
  onset = config.diffusion.onset
  onset_weight = config.diffusion.onset_weight
  state_weight = config.objective.state_weight
  task_config = config.task

  def loss_fn(params, constants, batch: Batch, key):
    variables = {'params': params, 'constants': constants}
    key_chain, key_trial, key_response = jax.random.split(key, 3)
    epoch_inputs = task_lib.epoch_inputs_from_config(batch.displays, task_config)
    epoch_drives, response_drives = network.drives(variables, epoch_inputs)
    num_displays, num_samples = batch.responses.shape
    x0 = jnp.zeros((num_displays, num_samples, network.num_units))
    x, trial_states = network.run_trial(variables, epoch_drives, x0, key_trial, record=True)
    y0 = diffusion.angle_to_point(batch.responses, radius)
    ys = diffusion.forward_chain(key_chain, network.schedule, y0)
    errors, response_sq = teacher_forced_response(network, variables, response_drives, x, ys,
                                                  y0, key_response)
    denoise = jnp.mean(errors)
    state_sq = (jnp.sum(jnp.mean(trial_states**2, axis=(1, 2, 3))) + jnp.sum(response_sq)) / (
        trial_states.shape[0] + response_sq.shape[0])
    loss = denoise + state_weight * state_sq
    metrics = {'denoise': denoise, 'state_sq': state_sq}
    if onset == 'regularise':
      penalty = onset_prior_penalty(network.readout(variables, x), network.schedule.prior_variance)
      loss = loss + onset_weight * penalty
      metrics['onset'] = penalty
    metrics['loss'] = loss
    return loss, metrics

  return loss_fn


def _free_run(network: rnn.Network, variables, batch: Batch, key, task_config, onset: str):
  """The whole trial run freely (reparameterised noise): responses (K, S) and states."""
  epoch_inputs = task_lib.epoch_inputs_from_config(batch.displays, task_config)
  return network.sample(variables, epoch_inputs, key, batch.responses.shape[1], onset=onset,
                        record=True)


def make_readout_mse_loss(config, network: rnn.Network, target: str) -> LossFn:
  """MSE of the free-running readout to a target point over the response epoch (METHOD 6).

  target='task_optimal': the cued item's report feature, rho (cos r_k, sin r_k).
  target='behaviour_mse': each sample's surrogate response, rho (cos y, sin y); the optimum is
  the conditional mean, a single mode.
  """
  radius = config.diffusion.radius
  state_weight = config.objective.state_weight

  def loss_fn(params, constants, batch: Batch, key):
    variables = {'params': params, 'constants': constants}
    _, states = _free_run(network, variables, batch, key, config.task, config.diffusion.onset)
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

  def loss_fn(params, constants, batch: Batch, key):
    variables = {'params': params, 'constants': constants}
    responses, states = _free_run(network, variables, batch, key, config.task,
                                  config.diffusion.onset)
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
  raise ValueError(f'config.objective.name must be one of {OBJECTIVES}, got {name!r}')
