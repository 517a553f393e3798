"""The Hydra commands (``python -m bcc.<command>``): each parses its config and calls one piece of work."""

__all__ = ["demo", "evaluate", "explain", "export", "predict", "real", "train"]
