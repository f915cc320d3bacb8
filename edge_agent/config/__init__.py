"""The agent's configuration: frozen sections (:mod:`.sections`), the rules declared on their fields
(:mod:`.rules`), the loader's pieces (:mod:`.table`, :mod:`.checks`), the data folder (:mod:`.paths`)
and the broker password (:mod:`.secrets`).

``edge_agent.configload`` reads a ``config.toml`` into these objects; each source type's section lives
beside its source in ``edge_agent.sources``; ``edge_agent.service.preflight`` checks, before start,
what the configuration names (model files, recordings, the password).
"""

from edge_agent.config.sections import (
    DEFAULT_METRICS_PORT,
    AgentConfig,
    AgentSection,
    DecisionSection,
    HomeAssistantSection,
    InferenceSection,
    MetricsSection,
    ModelSection,
    MqttSection,
    SourceSection,
    StreamsSection,
)

__all__ = [
    "DEFAULT_METRICS_PORT",
    "AgentConfig",
    "AgentSection",
    "DecisionSection",
    "HomeAssistantSection",
    "InferenceSection",
    "MetricsSection",
    "ModelSection",
    "MqttSection",
    "SourceSection",
    "StreamsSection",
]
