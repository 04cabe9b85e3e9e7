"""``simcse train`` / ``training/train.py``: fine-tune an encoder with SimCSE.

Examples::

    simcse train --config training/configs/unsup_bert_base.yaml
    accelerate launch --multi_gpu --num_processes 4 training/train.py --config training/configs/sup_bert_base.yaml
    simcse train --config training/configs/demo_unsup_minilm.yaml --max_steps 100 --output_dir runs/demo
    simcse train --config training/configs/demo_unsup_minilm.yaml --resume
    simcse train --config training/configs/demo_unsup_minilm.yaml --seeds 1 2 3 --output_dir runs/seeds
"""

from __future__ import annotations

import argparse

from simcse.config import FIELDS, TrainConfig, load_config
from simcse.evaluation.dev import best_text
from simcse.evaluation.tasks import TASKS, load_task

EPILOG = """Every config key can be given in the YAML file or as --key value (command line wins).
Unknown keys are rejected. The resolved config is written to <output_dir>/config.yaml; the best
model by STS-B dev Spearman is saved to <output_dir>/model with a model card (README.md), and the
run's loss, dev Spearman, alignment and uniformity are plotted in <output_dir>/training_curves.png.
--test-tasks scores the best model on the STS test suite afterwards (table in the card); --seeds runs
the recipe once per seed (<output_dir>/seed-N) and writes mean ± std of the test suite to
<output_dir>/seeds.md and seeds.json.

examples:
  simcse train --config training/configs/unsup_bert_base.yaml
  simcse train --config training/configs/demo_unsup_minilm.yaml --max_steps 100 --output_dir runs/demo
  simcse train --config training/configs/demo_unsup_minilm.yaml --output_dir runs/demo --resume
  simcse train --config training/configs/demo_unsup_minilm.yaml --max_steps 150 --test-tasks
  simcse train --config training/configs/demo_unsup_minilm.yaml --max_steps 150 --seeds 1 2 3
  simcse train --config training/configs/demo_sup_minilm.yaml --push_to_hub me/simcse-minilm-nli  # private repo
  accelerate launch --multi_gpu --num_processes 4 training/train.py --config training/configs/sup_bert_base.yaml
"""


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--config``, ``--resume`` and one ``--<key>`` option per config field."""
    parser.add_argument("--config", default=None, metavar="YAML", help="recipe file (training/configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, metavar="N",
        help="train once per seed into <output_dir>/seed-N, then report mean ± std on the STS test suite",
    )  # fmt: skip
    parser.add_argument(
        "--test-tasks", nargs="*", default=None, metavar="TASK",
        help=f"after training, score the best model on these STS test tasks (no names: all of {', '.join(TASKS)})",
    )  # fmt: skip
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
    """Train per the parsed arguments (once, or once per ``--seeds``) and print where everything went."""
    from simcse.train import train

    cfg = config_from_args(args)
    tasks = list(args.test_tasks or TASKS) if args.test_tasks is not None or args.seeds else None
    for task in tasks or ():  # a typo or a missing file fails now, not after the training
        load_task(task, cfg.data_dir)
    if cfg.push_to_hub:  # a missing token fails now, not after the training
        _check_push(cfg.push_to_hub, bool(args.seeds))
    try:
        if args.seeds:
            return _run_seeds(cfg, args.seeds, args.resume, tasks or list(TASKS))
        state = train(cfg, resume=args.resume)
    finally:  # once, after every run of the command (train() keeps it for the next seed)
        from simcse.distributed import end_process_groups

        end_process_groups()
    if not _is_main_process():
        return 0
    print(
        f"best {best_text(cfg.metric_for_best, state['best_metric'])} at step {state['best_step']} "
        f"(of {state['step']})\n"
        f"model:  {cfg.output_dir}/model\n"
        f"card:   {cfg.output_dir}/model/README.md"
        + (f"\ncurves: {cfg.output_dir}/training_curves.png" if cfg.plot_curves else "")
    )
    if tasks is not None:
        from simcse.evaluation.scoring import format_table
        from simcse.runs.report import score_run

        result = score_run(cfg.output_dir, tasks, cfg.data_dir, batch_size=cfg.eval_batch_size)
        print(f"STS test ({cfg.output_dir}/sts_test.json):\n{format_table(result)}")
    if cfg.push_to_hub:
        from simcse.publish import push_to_hub

        print(f"pushed: {push_to_hub(f'{cfg.output_dir}/model', cfg.push_to_hub)} (private)")
    return 0


def _check_push(repo_id: str, seeds: bool) -> None:
    from simcse.cli.common import CommandError
    from simcse.publish import get_token

    if seeds:
        raise CommandError("push_to_hub with --seeds: push the run you choose with simcse push <seed-dir>/model REPO")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise CommandError(f"push_to_hub {repo_id!r}: expected user/name or org/name")
    get_token()


def _run_seeds(cfg: TrainConfig, seeds: list[int], resume: bool, tasks: list[str]) -> int:
    from simcse.experiments import format_summary, run_seeds

    summary = run_seeds(cfg, seeds, resume=resume, tasks=tasks)
    if summary is not None:
        print(f"{format_summary(summary)}\nwritten: {', '.join(summary['files'])}")
    return 0


def _is_main_process() -> bool:
    from accelerate import PartialState

    return bool(PartialState().is_main_process)


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``simcse train``."""
    parser = subparsers.add_parser(
        "train", help="fine-tune an encoder with SimCSE", description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_train_arguments(parser)
    parser.set_defaults(func=run_train)
