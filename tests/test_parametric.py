"""The parametric swap model: weights, and sampled frequencies against them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnn_behaviour import evaluate
from rnn_behaviour import task
from rnn_behaviour.behaviour import parametric
from rnn_behaviour.behaviour import responses


def test_weights_follow_the_swap_function():
  d = task.Displays(cue=jnp.array([[0.0, 1.0, -2.0]]), report=jnp.zeros((1, 3)),
                    cued=jnp.array([0]))
  m = parametric.ParametricSwapModel(width=1.5, bias=-0.5, guess_logit=-2.0)
  w = m.mixture_weights(d)[0]
  logits = np.array([-2.0, 0.0, -1.0 / 3.0 - 0.5, -4.0 / 3.0 - 0.5])
  np.testing.assert_allclose(w, np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)


def test_flat_and_none_kinds():
  d = task.sample_displays(jax.random.key(0), 100, 3)
  bias = parametric.flat_bias_for_rate(0.3, 3, -3.0)
  w = parametric.ParametricSwapModel(kind='flat', bias=bias).mixture_weights(d)
  swap = jnp.sum(jnp.where(task.nontarget_mask(d), w[:, 1:], 0), axis=1)
  np.testing.assert_allclose(swap, 0.3, rtol=1e-5)
  w = parametric.ParametricSwapModel(kind='none').mixture_weights(d)
  assert float(jnp.max(jnp.where(task.nontarget_mask(d), w[:, 1:], 0))) == 0.0
  with pytest.raises(ValueError, match='swap kind'):
    parametric.ParametricSwapModel(kind='wiggly').mixture_weights(d)


def test_sampled_item_frequencies_match_weights():
  """With very precise memories each response's nearest item reveals its component."""
  d = task.sample_displays(jax.random.key(1), 200, 3, min_separation_report=1.0)
  m = parametric.ParametricSwapModel(bias=0.0, guess_logit=-30.0, kappa=2000.0)
  y = m.sample_responses(jax.random.key(2), d, 4000)
  assert y.shape == (200, 4000)
  freq = evaluate.item_frequencies(y, d)
  w = m.mixture_weights(d)[:, 1:]
  np.testing.assert_allclose(freq, w, atol=4 * np.sqrt(0.25 / 4000))


def test_guesses_are_uniform_and_noise_is_von_mises():
  d = task.sample_displays(jax.random.key(3), 50, 2)
  guesses = responses.sample_mixture(jax.random.key(4), jnp.array([[1.0, 0.0, 0.0]] * 50),
                                     d.report, 5.0, 2000)
  counts, _ = np.histogram(np.asarray(guesses), 10, range=(-np.pi, np.pi))
  assert counts.min() > 0.9 * 10000
  target = responses.sample_mixture(jax.random.key(5), jnp.array([[0.0, 1.0, 0.0]] * 50),
                                    d.report, 5.0, 2000)
  errors = np.asarray(jnp.cos(target - d.report[:, :1]))
  # E cos(error) = I1(k) / I0(k) for a von Mises of concentration k.
  from scipy import special
  np.testing.assert_allclose(errors.mean(), special.i1(5.0) / special.i0(5.0), atol=0.005)


def test_mixture_log_density_normalises():
  d = task.sample_displays(jax.random.key(6), 3, 2)
  w = parametric.ParametricSwapModel().mixture_weights(d)
  grid = jnp.linspace(-np.pi, np.pi, 2001)[:-1]
  dens = jnp.exp(responses.mixture_log_density(jnp.broadcast_to(grid, (3, 2000)), w,
                                               d.report, 8.0))
  np.testing.assert_allclose(dens.mean(axis=1) * 2 * np.pi, 1.0, rtol=1e-4)


@pytest.mark.parametrize('signature', ['no_swaps', 'flat'])
def test_limited_signatures(tiny_config, signature):
  from rnn_behaviour.behaviour import source
  tiny_config.behaviour.swap_bias = 0.0
  tiny_config.behaviour.kappa = 2000.0
  tiny_config.behaviour.guess_logit = -30.0
  full = source.target_model_from_config(tiny_config)
  tiny_config.behaviour.signature = signature
  limited = source.training_model_from_config(tiny_config)
  d = task.displays_from_config(jax.random.key(0), 256, tiny_config.task)
  freq = evaluate.item_frequencies(limited.sample_responses(jax.random.key(1), d, 400), d)
  swap = np.asarray(jnp.sum(jnp.where(task.nontarget_mask(d), freq, 0.0), axis=1))
  true_rate = source.remembered_nontarget_rate(full, d)
  if signature == 'no_swaps':
    assert swap.max() == 0.0
  else:
    # The same mean rate as the full behaviour, but no dependence on cue distance.
    np.testing.assert_allclose(swap.mean(), true_rate, atol=0.01)
    near = np.asarray(task.cue_distances(d).max(axis=1) < 1.0)
    assert abs(swap[near].mean() - swap[~near].mean()) < 0.03
  np.testing.assert_allclose(limited.mixture_weights(d).sum(1), 1.0, rtol=1e-5)
