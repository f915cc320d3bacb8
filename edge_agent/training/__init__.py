"""Offline tools: data loading, training, evaluation, quantisation, export and the results report.

Never imported by the running agent; ``commands`` registers the ``edge-agent`` subcommands for them.
"""
