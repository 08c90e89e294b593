"""Experiment configs: `default.py` (CPU-sized) and variants that override only what differs."""
