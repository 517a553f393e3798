"""What every layer agrees on: the codes and the rule, the run folder's layout, atomic writes, errors and exit
codes, the commands' configs, their lines on the terminal."""

__all__ = ["classification", "cli", "config", "errors", "io", "jobs", "layout", "log", "machine", "patterns",
           "predictions", "settings"]
