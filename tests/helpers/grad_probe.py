"""Run one training step's forward/backward (no optimizer step) and save loss and gradients.

Launched by tests with ``torch.distributed.run --nproc_per_node N`` or plain python; rank 0
writes ``{"loss": global mean loss, "grads": {name: tensor}}`` to ``--out``. The step is the
loop's: with ``--grad_cache_chunk_size N`` (a config key) it goes through the gradient cache.
"""

import argparse
import sys

import torch
from accelerate import Accelerator

from simcse.config import load_config, parse_overrides
from simcse.data.cache import load_training_views
from simcse.data.sampler import BatchSchedule
from simcse.train.model import build_model
from simcse.train.step import compute_loss, make_grad_cache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--step", type=int, default=0)
    args, rest = parser.parse_known_args()
    cfg = load_config(None, parse_overrides(rest))
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    tokenizer = model.encoder.tokenizer
    views = load_training_views(cfg, tokenizer, verbose=False)
    schedule = BatchSchedule(len(views), cfg.batch_size, accelerator.num_processes, cfg.seed)
    model = accelerator.prepare(model)
    model.train()
    batch = views.collate(schedule.rows(args.step, accelerator.process_index))
    cache = make_grad_cache(cfg, accelerator)
    if cache is not None:
        loss = cache.loss(model, batch)
        cache.backward(loss)
    else:
        loss = compute_loss(model, batch, cfg, tokenizer)
        accelerator.backward(loss)
    global_loss = accelerator.reduce(loss.detach(), reduction="mean")
    inner = accelerator.unwrap_model(model)
    grads = {n: p.grad.detach().clone() for n, p in inner.named_parameters() if p.grad is not None}
    if accelerator.is_main_process:
        torch.save({"loss": float(global_loss), "grads": grads}, args.out)
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    sys.exit(main())
