"""``python -m bcc.predict``: the entry point; the command is ``bcc.cli.predict``."""
import sys

from bcc.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
