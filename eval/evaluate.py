"""Evaluate sentence encoders on STS12-16, STS-B and SICK-R (SentEval protocol, as in the SimCSE paper).

Same options as ``simcse eval``; see ``python eval/evaluate.py --help``. Example::

    python eval/evaluate.py --model princeton-nlp/sup-simcse-bert-base-uncased --data-dir data --output results.json
"""

import sys

from simcse.cli.eval import main

if __name__ == "__main__":
    sys.exit(main(prog="eval/evaluate.py"))
