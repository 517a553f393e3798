"""``python -m bcc.folds DATASET_DIR``: the entry point; the command is ``bcc.data.folds.main``."""
import sys

from bcc.data.folds import main

if __name__ == "__main__":
    sys.exit(main())
