"""Train a SimCSE model: ``accelerate launch training/train.py --config CONFIG.yaml [--key value ...]``."""

import sys

from simcse.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
