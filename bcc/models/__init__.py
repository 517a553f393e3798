"""The network and what trains or scores it: backbones, heads, losses, the metrics logged while training,
operating points, the safe checkpoint reader."""

__all__ = ["backbones", "calibration", "checkpoint", "losses", "metrics", "network", "serialization"]
