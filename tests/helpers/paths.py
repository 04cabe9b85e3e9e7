"""Where things are: the repository, the shared data, the child scripts of this folder, the training entry point."""

from __future__ import annotations

import os

HELPERS = os.path.dirname(os.path.abspath(__file__))  # the child scripts the tests launch (train_child.py...)
REPO = os.path.dirname(os.path.dirname(HELPERS))
SHARED_DATA = os.path.abspath(os.path.join(REPO, "..", "shared", "data"))
TRAIN = os.path.join(REPO, "training", "train.py")
