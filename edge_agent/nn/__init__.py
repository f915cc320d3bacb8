"""Network definitions, used offline only (training, export); the running agent never imports this."""

from edge_agent.nn.anomaly_frontends import AnomalyFrontEnd
from edge_agent.nn.audio import AudioResidualNet1d, audio_drsn_cw
from edge_agent.nn.autoencoders import (
    AnomalyDetector,
    Autoencoder,
    get_autoencoder,
    list_autoencoders,
    register_autoencoder,
)
from edge_agent.nn.blocks import (
    ResidualShrinkageBlock1d,
    ShrinkageUnit,
    SoftThreshold,
    Standardize,
    soft_threshold,
)
from edge_agent.nn.models import ResidualNet1d, get_model, list_models, register_model

__all__ = [
    "AnomalyDetector",
    "AnomalyFrontEnd",
    "AudioResidualNet1d",
    "Autoencoder",
    "ResidualNet1d",
    "ResidualShrinkageBlock1d",
    "ShrinkageUnit",
    "SoftThreshold",
    "Standardize",
    "audio_drsn_cw",
    "get_autoencoder",
    "get_model",
    "list_autoencoders",
    "list_models",
    "register_autoencoder",
    "register_model",
    "soft_threshold",
]
