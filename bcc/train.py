"""``python -m bcc.train``: the entry point; the command is ``bcc.cli.train``."""
import sys

from bcc.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
