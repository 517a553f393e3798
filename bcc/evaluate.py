"""``python -m bcc.evaluate``: the entry point; the command is ``bcc.cli.evaluate``."""
import sys

from bcc.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
