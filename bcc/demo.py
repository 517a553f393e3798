"""``python -m bcc.demo``: the entry point; the command is ``bcc.cli.demo``."""
import sys

from bcc.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
