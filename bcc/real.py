"""``python -m bcc.real``: the entry point; the command is ``bcc.cli.real``."""
import sys

from bcc.cli.real import main

if __name__ == "__main__":
    sys.exit(main())
