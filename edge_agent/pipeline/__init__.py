"""The stages between sources and sinks: windowing (with resampling), inference, decision.

chunks -> per-sensor windows at the model's rate -> batched TorchScript calls -> predictions ->
per-sensor alert state machine -> alert events for the sinks (``windowing``, ``resample``,
``inference``, ``decision``; ``prediction_series`` keeps the per-label prediction metrics).
"""
