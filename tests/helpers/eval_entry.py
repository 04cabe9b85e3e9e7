"""``simcse eval`` with a fault injected, for tests of what every process does when one fails.

Usage (alone or under ``torchrun``)::

    python eval_entry.py eval --model ...     (the arguments of ``simcse``)

Fault, from the environment: ``SIMCSE_TEST_ENCODE_FAIL=RANK``: ``Encoder.encode`` raises on process RANK
(as an out-of-memory error would, in the middle of an evaluation). Everything else is the command users run.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    if os.environ.get("SIMCSE_TEST_ENCODE_FAIL") == os.environ.get("RANK", "0"):
        from simcse.encoder import Encoder

        def encode(self, *args, **kwargs):
            raise RuntimeError(f"injected failure on process {os.environ.get('RANK', '0')}")

        Encoder.encode = encode
    from simcse.cli import main as simcse

    return simcse(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
