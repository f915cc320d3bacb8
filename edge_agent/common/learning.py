"""What a learning run may train and its defaults: one list for both sides.

Read by file learning (``edge-agent learn INPUT...``, edge_agent.training.learn_cli), by ``[sources.learn]``
(edge_agent.config.learn) and by the live command (edge_agent.service.learn_state), so the runtime validates
the names without importing the training code that implements them.
"""

from __future__ import annotations

NETWORKS = ("undercomplete", "denoising", "sparse", "conv", "excess", "consensus")
FRONTENDS = ("logspec", "logmel", "raw", "envelope", "bandkurtosis", "envspread", "blockspread")
DEFAULT_NETWORK = "undercomplete"
DEFAULT_FRONTEND = "logspec"
DEFAULT_FALSE_RATE = 0.01  # target false-window rate on held-back healthy windows
DEFAULT_STEPS = 1500  # optimiser steps of the trainer
