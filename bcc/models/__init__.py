"""The network and what trains or scores it: backbones, heads, losses, the metrics logged while training,
operating points, the safe checkpoint reader."""

__all__ = ["activations", "backbones", "calibration", "checkpoint", "imagenet_weights", "losses", "metrics",
           "network", "serialization"]
