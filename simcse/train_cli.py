"""``simcse train`` / ``training/train.py``: fine-tune an encoder with SimCSE.

Examples::

    simcse train --config training/configs/unsup_bert_base.yaml
    accelerate launch --multi_gpu --num_processes 4 training/train.py --config training/configs/sup_bert_base.yaml
    simcse train --config training/configs/demo_unsup_minilm.yaml --max_steps 100 --output_dir runs/demo
    simcse train --config training/configs/demo_unsup_minilm.yaml --resume
"""

from __future__ import annotations

import argparse
from simcse.config import FIELDS, TrainConfig, load_config

EPILOG = """Every config key can be given in the YAML file or as --key value (command line wins).
Unknown keys are rejected. The resolved config is written to <output_dir>/config.yaml; the best
model by STS-B dev Spearman is saved to <output_dir>/model.

examples:
  simcse train --config training/configs/unsup_bert_base.yaml
  simcse train --config training/configs/demo_unsup_minilm.yaml --max_steps 100 --output_dir runs/demo
  simcse train --config training/configs/demo_unsup_minilm.yaml --output_dir runs/demo --resume
  accelerate launch --multi_gpu --num_processes 4 training/train.py --config training/configs/sup_bert_base.yaml
"""


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--config``, ``--resume`` and one ``--<key>`` option per config field."""
    parser.add_argument("--config", default=None, metavar="YAML", help="recipe file (training/configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    group = parser.add_argument_group("config keys (override the YAML file)")
    for name, field in FIELDS.items():
        default = field.default
        kind = {bool: "BOOL", int: "N", float: "X"}.get(type(default), "VALUE") if default is not None else "VALUE"
        group.add_argument(
            f"--{name}", dest=f"cfg_{name}", default=argparse.SUPPRESS, metavar=kind,
            help=f"{field.metadata['help']} (default: {field.default!r})",
        )  # fmt: skip
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the run's config: defaults, then ``--config``, then ``--key`` overrides."""
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    return load_config(args.config, overrides)


def run_train(args: argparse.Namespace) -> int:
    """Train per the parsed arguments and print where the model was written."""
    from simcse.training import train

    cfg = config_from_args(args)
    state = train(cfg, resume=args.resume)
    print(
        f"best STS-B dev {state['best_metric']:.2f} at step {state['best_step']} "
        f"(of {state['step']}); model: {cfg.output_dir}/model"
    )
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``simcse train``."""
    parser = subparsers.add_parser(
        "train", help="fine-tune an encoder with SimCSE", description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_train_arguments(parser)
    parser.set_defaults(func=run_train)
