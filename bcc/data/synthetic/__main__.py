"""``python -m bcc.data.synthetic --out DIR [--n 1559] [--size 256] [--seed 0] [--twins]``: write the synthetic set."""
from __future__ import annotations

import sys
from pathlib import Path

from bcc.core.cli import ranged, run_command, tool_parser
from bcc.core.config import Range
from bcc.core.log import get_logger
from bcc.data.synthetic.labels import PAPER_N
from bcc.data.synthetic.writer import N_RANGE, SIZE_RANGE, generate, summary

log = get_logger(__name__)


def main(argv: list[str] | None = None) -> int:
    p = tool_parser("data.synthetic", __doc__.split(":", 1)[1].strip())
    p.add_argument("--out", type=Path, required=True, help="dataset directory to write (replaced atomically)")
    p.add_argument("--n", type=ranged(N_RANGE), default=PAPER_N, help="images (default: the paper's 1559)")
    p.add_argument("--size", type=ranged(SIZE_RANGE), default=256, help="image side in pixels")
    p.add_argument("--seed", type=ranged(Range(int, 0, 2**32 - 1)), default=0)
    p.add_argument("--workers", type=ranged(Range(int, 1, 256)), default=None,
                   help="rendering processes (the output does not depend on it)")
    p.add_argument("--twins", action="store_true",
                   help="also write twins/<image_id>.png: each image re-rendered without its patterns")
    a = p.parse_args(argv)

    def body() -> None:
        generate(a.out, n=a.n, size=a.size, seed=a.seed, progress=True, workers=a.workers, twins=a.twins)
        log.info(summary(a.out))

    return run_command("bcc.data.synthetic", body, a.debug)


if __name__ == "__main__":
    sys.exit(main())
