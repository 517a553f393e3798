"""``python -m bcc.explain``: the entry point; the command is ``bcc.cli.explain``."""
import sys

from bcc.cli.explain import main

if __name__ == "__main__":
    sys.exit(main())
