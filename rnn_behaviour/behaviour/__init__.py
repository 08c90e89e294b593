"""Behavioural models: parametric swap models, trial data, mixture and non-parametric fits."""
