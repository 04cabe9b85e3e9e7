"""Sized for GPUs, checked on the CPU: the launcher's precision, host syncs per step, the on-device skip of a
non-finite update, checkpoint and logging cadence, refused engines, where Encoder runs."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from simcse.encoder import Encoder
from simcse.encoder.encoder import default_device
from simcse.train import load_config, train
from simcse.train.objective_step import ObjectiveStep
from simcse.train.prepared import refuse_engine
from simcse.train.step import TrainStep, build_optimizer
from tests.helpers.data import write_corpus
from tests.helpers.paths import REPO
from tests.helpers.syncs import WouldSync

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    write_corpus(path)
    return str(path)


def config(tiny_model_dir, corpus, tmp_path, small_dev_data, **kw):
    base = dict(model_name_or_path=tiny_model_dir, train_file=corpus, data_dir=small_dev_data, batch_size=8,
                max_seq_len=16, learning_rate=1e-3, max_steps=4, eval_steps=4,
                output_dir=str(tmp_path / "run"))  # fmt: skip
    return load_config(None, {**base, **kw})


def records(cfg):
    with open(os.path.join(cfg.output_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_precision_comes_from_the_launcher_unless_the_recipe_sets_it(
    tiny_model_dir, corpus, tmp_path, small_dev_data, monkeypatch
):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate config` / launch set
    launched = train(config(tiny_model_dir, corpus, tmp_path / "a", small_dev_data, max_steps=1, eval_steps=1))
    assert launched["mixed_precision"] == "bf16"
    # the recipe's own value wins; and a second train() in the same process may change the precision
    pinned = train(config(tiny_model_dir, corpus, tmp_path / "b", small_dev_data, max_steps=1, eval_steps=1,
                          mixed_precision="no"))  # fmt: skip
    assert pinned["mixed_precision"] == "no"
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    assert train(config(tiny_model_dir, corpus, tmp_path / "c", small_dev_data, max_steps=1, eval_steps=1))[
        "mixed_precision"
    ] == "no"


class HostReads:
    """Counts the calls made by simcse's own code that bring a tensor's value to the host (a sync on a GPU).

    The model's own forward may read too (transformers' SDPA mask asks ``padding_mask.all()`` once per
    forward); ``tests/gpu/test_gpu.py`` counts every sync on CUDA, that one included.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in HOST_READS:
            real = getattr(torch.Tensor, name)

            def counted(self_, *args, _real=real, **kwargs):
                caller = sys._getframe(1).f_code.co_filename
                self.count += os.sep + "simcse" + os.sep in caller
                return _real(self_, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize(("objective", "per_step"), [("infonce", 0), ("moco", 1)])
def test_a_step_reads_the_device_only_when_asked(tiny_model_dir, corpus, tmp_path, small_dev_data, monkeypatch,
                                                 objective, per_step):  # fmt: skip
    from accelerate import Accelerator

    from simcse.data.cache import load_training_views
    from simcse.train.model import build_model

    cfg = config(tiny_model_dir, corpus, tmp_path, small_dev_data, objective=objective,
                 **({"queue_size": 16} if objective == "moco" else {}))  # fmt: skip
    model = build_model(cfg)
    views = load_training_views(cfg, model.encoder.tokenizer, verbose=False)
    accelerator = Accelerator(cpu=True)
    optimizer = build_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    objective_step = ObjectiveStep(cfg, model.encoder.dim)
    step = TrainStep(accelerator, model, optimizer, cfg, objective_step)
    step(views.collate(range(8)))  # warm-up
    counts = []
    for read in (False, False, True):
        reads = HostReads(monkeypatch)
        outcome = step(views.collate(range(8)), read=read)
        monkeypatch.undo()
        counts.append(reads.count)
        assert (outcome is None) != read
    # infonce: no host read but the read step's one (tolist); moco: its momentum encoder needs the flag each step
    assert counts == [per_step, per_step, per_step + 1], counts
    assert outcome.steps == 3 and outcome.skipped == 0 and outcome.loss > 0


def test_a_nonfinite_loss_is_skipped_on_the_device_and_counted_at_the_next_read(
    tiny_model_dir, corpus, tmp_path, small_dev_data, monkeypatch
):
    import simcse.train.step as step_module

    real, calls = step_module.compute_loss, []

    def nan_at_step_3(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(step_module, "compute_loss", nan_at_step_3)
    cfg = config(tiny_model_dir, corpus, tmp_path, small_dev_data, max_steps=6, eval_steps=6, logging_steps=5,
                 checkpoint_steps=1, keep_last_n=10, collapse_check_steps=0)  # fmt: skip
    state = train(cfg)
    assert state["nonfinite_skipped"] == 1
    from safetensors.torch import load_file

    weights = [load_file(os.path.join(cfg.output_dir, "checkpoints", f"step-{s:08d}", "model.safetensors"))
               for s in (2, 3, 4)]  # fmt: skip
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # step 3 changed nothing
    assert any(not torch.equal(weights[1][k], weights[2][k]) for k in weights[0])  # step 4 did


def test_records_every_logging_steps_and_checkpoints_on_their_own_cadence(
    tiny_model_dir, corpus, tmp_path, small_dev_data
):
    cfg = config(tiny_model_dir, corpus, tmp_path, small_dev_data, max_steps=7, eval_steps=3, logging_steps=2,
                 collapse_check_steps=0)  # fmt: skip
    assert cfg.checkpoint_steps == 1000  # not at every evaluation: a full checkpoint is large on GPUs
    train(cfg)
    assert [r["step"] for r in records(cfg)] == [2, 3, 4, 6, 7]  # every 2nd, the evaluations (3, 6) and the end
    assert os.listdir(os.path.join(cfg.output_dir, "checkpoints")) == ["step-00000007"]  # the end only


@pytest.mark.parametrize("engine", ["DistributedType.FSDP", "DistributedType.DEEPSPEED"])
def test_untested_engines_are_refused_in_one_line(engine):
    with pytest.raises(ValueError, match="not supported yet.*multi_gpu.yaml") as err:
        refuse_engine(engine)
    assert "\n" not in str(err.value)
    refuse_engine("DistributedType.MULTI_GPU")  # DDP runs
    refuse_engine("DistributedType.NO")


def test_encoder_runs_where_it_is_told_and_defaults_to_a_gpu(tiny_model_dir, monkeypatch):
    assert Encoder.from_pretrained(tiny_model_dir, device="cpu").device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    assert Encoder.from_pretrained(tiny_model_dir).device.type == "cpu"


@pytest.mark.parametrize("kw", [{"do_mlm": True}, {"objective": "byol"}, {"objective": "simsiam"}])
def test_every_module_the_loss_uses_runs_inside_the_models_forward(tiny_model_dir, corpus, tmp_path,
                                                                   small_dev_data, kw):  # fmt: skip
    """DDP synchronises what runs inside the wrapped model's forward: the MLM head and the predictor must too."""
    from simcse.data.cache import load_training_views
    from simcse.train.model import build_model
    from simcse.train.step import compute_loss

    cfg = config(tiny_model_dir, corpus, tmp_path, small_dev_data, **kw)
    model = build_model(cfg).train()
    batch = load_training_views(cfg, model.encoder.tokenizer, verbose=False).collate(range(8))
    inside, calls = [False], []
    model.register_forward_pre_hook(lambda m, a: inside.__setitem__(0, True))
    model.register_forward_hook(lambda m, a, o: inside.__setitem__(0, False))
    watched = [m for m in (model.mlm_model, getattr(model.objective, "predictor", None)) if m is not None]
    assert watched
    for module in watched:
        module.register_forward_hook(lambda m, a, o: calls.append(inside[0]))
    loss = compute_loss(model, batch, cfg, model.encoder.tokenizer, ObjectiveStep(cfg, model.encoder.dim))
    loss.backward()
    assert calls and all(calls), calls


@pytest.mark.parametrize(
    ("flag", "engine"), [("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"), ("ACCELERATE_USE_FSDP", "FSDP")]
)
def test_an_engine_set_by_the_launcher_is_refused_before_anything_is_built(
    tiny_model_dir, corpus, tmp_path, small_dev_data, flag, engine
):
    """`accelerate launch` with a DeepSpeed / FSDP config sets these flags; the refusal must come first
    (Accelerator() would otherwise fail on its own, e.g. asking to install DeepSpeed)."""
    import subprocess

    args = [f"--model_name_or_path={tiny_model_dir}", f"--train_file={corpus}", f"--output_dir={tmp_path / 'run'}"]
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "training", "train.py"), *args], capture_output=True, text=True,
        env={**os.environ, flag: "true", "PYTHONPATH": REPO}, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"simcse train: error: {engine} (from `accelerate config`) is not supported yet"), last
    assert not os.path.exists(tmp_path / "run")  # nothing built, nothing written


def test_every_shipped_launcher_template_runs_an_engine_the_trainer_accepts():
    """A template the trainer refuses could never reach its own message (Accelerate's launcher stops first)."""
    import yaml

    folder = os.path.join(REPO, "training", "configs", "accelerate")
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            engine = yaml.safe_load(f)["distributed_type"]
        refuse_engine(f"DistributedType.{engine}")  # raises for a refused engine


@pytest.mark.parametrize("kw", [{"do_mlm": True}, {"objective": "contrastive", "mode": "pairs"}, {}])
def test_a_step_that_is_not_read_makes_no_host_sync_of_its_own(tiny_model_dir, tmp_path, small_dev_data, kw):
    """MLM masking, the pair objectives' labels, the special tokens, the stop flag: built on the device."""
    from accelerate import Accelerator

    from simcse.data.cache import load_training_views
    from simcse.train.model import build_model
    from tests.helpers.data import write_triplets

    kw = dict(kw)
    data = tmp_path / ("nli.csv" if kw.get("mode") == "pairs" else "corpus.txt")
    (write_triplets if kw.get("mode") == "pairs" else write_corpus)(data)
    cfg = config(tiny_model_dir, str(data), tmp_path, small_dev_data, **kw)
    model = build_model(cfg)
    views = load_training_views(cfg, model.encoder.tokenizer, verbose=False)
    accelerator = Accelerator(cpu=True)
    optimizer = build_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    step = TrainStep(accelerator, model, optimizer, cfg, ObjectiveStep(cfg, model.encoder.dim))
    batch = views.collate(range(8))  # collated on the host, by the loader
    step(batch, read=False)  # warm-up (constants copied to the device once)
    with WouldSync() as syncs:
        step(batch, read=False, stop=True)
    assert syncs.found == [], syncs.found
    with WouldSync() as syncs:  # a read step: its one sync is the read itself (.tolist(), counted by HostReads above)
        step(batch, read=True, failed=True)
    assert syncs.found == [], syncs.found
