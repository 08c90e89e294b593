"""Judging a network's swap function: BNS fitted to sampled responses (METHOD 7)."""

import jax
import numpy as np

from rnn_behaviour import evaluate
from rnn_behaviour import task as task_lib
from rnn_behaviour.behaviour import parametric


def test_fit_swap_function_recovers_a_known_swap_function():
  key_displays, key_responses, key_fit = jax.random.split(jax.random.key(0), 3)
  displays = task_lib.sample_displays(key_displays, 512, num_items=2, cue_grid=0, report_grid=0,
                                      min_separation_cue=0.3, min_separation_report=np.pi / 4)
  truth = parametric.ParametricSwapModel(kind='gaussian', width=0.5, bias=0.5, guess_logit=-3.0,
                                         kappa=8.0)
  responses = truth.sample_responses(key_responses, displays, 16)
  curve = evaluate.fit_swap_function(key_fit, displays, responses, num_steps=800,
                                     min_distance=0.3)
  d, mean = np.array(curve['distance']), np.array(curve['mean'])
  assert d.min() >= 0.3 - 1e-6 and np.isclose(d.max(), np.pi)
  assert np.all(np.array(curve['lower']) <= mean) and np.all(mean <= np.array(curve['upper']))
  known = np.asarray(truth.swap_logit(d))
  where = d < 2.0                 # Where swaps are frequent enough to measure f (rate > 1%).
  np.testing.assert_allclose(mean[where], known[where], atol=0.3)
  assert mean[d < 0.5].mean() - mean[d > 2.8].mean() > 2.0
