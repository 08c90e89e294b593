"""The divergence watch: a diverging run stops, a diverging ensemble member rolls back.

A run diverges on non-finite metrics, or on a loss above config.train.divergence_factor x its
running level for config.train.divergence_patience steps in a row (`watch_loss`). The loop
writes no checkpoint while a loss is far above its level, and rotation keeps the best checkpoint
as well as the latest, so the last good state always survives.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rnn_behaviour import train_step

class TrainingDiverged(FloatingPointError):
  """The loss left its running level for good; training stopped."""


@dataclasses.dataclass(frozen=True)
class LossWatch:
  """Per member: the running loss level and how many steps in a row the loss was far above it.

  level: (E,) exponential moving average of the losses that were not far above it, over about
    config.train.divergence_window steps (NaN before the first step).
  streak: (E,) consecutive steps with loss > level + divergence_factor * |level|.
  """
  level: np.ndarray
  streak: np.ndarray


def new_loss_watch(num_members: int) -> LossWatch:
  return LossWatch(level=np.full(num_members, np.nan), streak=np.zeros(num_members, int))


def watch_loss(watch: LossWatch, losses, active, train_config
               ) -> tuple[LossWatch, np.ndarray, np.ndarray]:
  """One step of divergence detection: (watch, far_above, diverged), each (E,).

  A loss is far above its level when loss > level + factor * |level| (factor =
  config.train.divergence_factor; 0 disables the test); a member diverges after
  config.train.divergence_patience such steps in a row. Far-above losses do not move the
  level, so a divergence cannot drag its own reference up; inactive (frozen) members and
  non-finite losses (handled by the NaN check) leave the watch unchanged.
  """
  factor = float(train_config.get('divergence_factor', 100.0))
  patience = int(train_config.get('divergence_patience', 20))
  window = float(train_config.get('divergence_window', 100))
  losses = np.asarray(losses, np.float64).reshape(-1)
  use = np.asarray(active, bool).reshape(-1) & np.isfinite(losses)
  first = use & np.isnan(watch.level)
  level = np.where(first, losses, watch.level)
  far = use & ~first & (factor > 0) & (losses > level + factor * np.abs(level))
  streak = np.where(far, watch.streak + 1, np.where(use, 0, watch.streak))
  update = use & ~far & ~first
  level = np.where(update, level + (losses - level) / window, level)
  return LossWatch(level=level, streak=streak), far, streak >= patience


def copy_state(state: train_step.TrainState) -> train_step.TrainState:
  """A copy of a (possibly sharded) state on its devices, safe from the step's donation."""
  return jax.tree_util.tree_map(jnp.copy, state)


def roll_back(state: train_step.TrainState, snapshot, members) -> train_step.TrainState:
  """`state` with the given members' entries replaced by theirs in `snapshot`."""
  keep = np.zeros(jax.tree_util.tree_leaves(state)[0].shape[0], bool)
  keep[np.asarray(members)] = True

  def roll(now, old):
    return jnp.where(keep.reshape((-1,) + (1,) * (now.ndim - 1)), old, now)

  return jax.tree_util.tree_map(roll, state, snapshot)
