"""``python -m bcc.export``: the entry point; the command is ``bcc.cli.export``."""
import sys

from bcc.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
