"""What every layer agrees on: the codes and the rule, the run folder's layout, atomic writes, errors and exit
codes, the commands' configs."""

__all__ = ["classification", "cli", "config", "errors", "io", "jobs", "layout", "machine", "patterns",
           "predictions", "settings"]
