"""The stages between sources and sinks: routing, windowing (with resampling), inference, decision, fan-out.

chunks -> router (sensor discovery, the sensors' metric series) -> per-sensor windows at the
model's rate -> batched TorchScript calls -> predictions -> per-sensor alert state machine ->
alert events -> every sink (datapath.py holds these together; service/app.py runs them).
"""
