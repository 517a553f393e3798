"""``python -m bcc.consensus DATASET_DIR``: the entry point; the command is ``bcc.data.consensus.main``."""
import sys

from bcc.data.consensus import main

if __name__ == "__main__":
    sys.exit(main())
