"""MTEB 2 runs our ``Encoder`` natively, offline, and scores what our evaluator scores.

``mteb`` (the ``mteb`` extra, in ``dev``) is really run: ``mteb.evaluate(encoder, task)`` with an STS task
whose pairs come from the local data (:func:`simcse.evaluation.mteb_tasks.local_mteb_task`), no cache and
no download. The reference is :func:`simcse.evaluation.scoring.evaluate_sts` on the same pairs.
"""

from __future__ import annotations

import json
import os

import mteb
import numpy as np
import pytest
import torch

from simcse.encoder.mteb import folder_prompts, mteb_prompt
from simcse.encoder.prompts import PromptSettings
from simcse.evaluation.mteb_tasks import local_mteb_task
from simcse.evaluation.scoring import evaluate_sts

SENTENCES = ["a man is playing the guitar", "a woman eats bread", "the dog runs in the park", "a red car"]


def _loader(texts: list[str], batch_size: int = 3) -> torch.utils.data.DataLoader:
    from datasets import Dataset

    return torch.utils.data.DataLoader(Dataset.from_dict({"text": texts}), batch_size=batch_size)


def test_encoder_is_an_mteb2_encoder(tiny_encoder) -> None:
    from mteb.models import EncoderProtocol, ModelMeta

    assert isinstance(tiny_encoder, EncoderProtocol)
    meta = tiny_encoder.mteb_model_meta
    assert isinstance(meta, ModelMeta) and meta.loader is not None
    assert meta.embed_dim == tiny_encoder.dim and meta.max_tokens == tiny_encoder.max_seq_length
    assert meta.name.startswith("local/") and meta.revision and meta.similarity_fn_name.value == "cosine"


def test_dataloader_input_equals_list_input(tiny_encoder) -> None:
    task = mteb.get_task("STSBenchmark")
    out = tiny_encoder.encode(
        _loader(SENTENCES), task_metadata=task.metadata, hf_split="test", hf_subset="default", prompt_type=None,
        batch_size=2,
    )  # fmt: skip
    np.testing.assert_allclose(out, tiny_encoder.encode(SENTENCES), rtol=1e-5, atol=1e-6)
    a, b = out[:2], out[2:]
    pair = tiny_encoder.similarity_pairwise(torch.from_numpy(a), b)
    expected = np.diag(tiny_encoder.similarity(a, b))  # cosine: the matrix's diagonal
    np.testing.assert_allclose(pair, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no 'text'"):
        tiny_encoder.encode(torch.utils.data.DataLoader([{"image": 1}]), task_metadata=task.metadata)


def test_prompts_follow_mteb_priority(tiny_encoder, monkeypatch) -> None:
    from mteb.types import PromptType

    sts, retrieval = mteb.get_task("STSBenchmark").metadata, mteb.get_task("SciFact").metadata
    prompts = {"STSBenchmark": "sim: ", "query": "q: ", "Retrieval-document": "doc: "}
    monkeypatch.setattr(tiny_encoder, "prompts", PromptSettings(prompts=prompts))
    assert folder_prompts(tiny_encoder) == prompts
    assert mteb_prompt(tiny_encoder, sts, PromptType.query) == "sim: "  # task name first
    assert mteb_prompt(tiny_encoder, retrieval, PromptType.document) == "doc: "  # task type + prompt type
    assert mteb_prompt(tiny_encoder, retrieval, PromptType.query) == "q: "  # prompt type
    prompted = tiny_encoder.encode(_loader(["x"]), task_metadata=sts, hf_split="test", hf_subset="default")
    np.testing.assert_allclose(prompted, tiny_encoder.encode(["x"], prompt="sim: "), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prompted, tiny_encoder.encode(["sim: x"]), rtol=1e-5, atol=1e-6)


def test_prompts_come_from_a_sentence_transformers_folder(tiny_model_dir, tmp_path) -> None:
    from simcse import Encoder

    folder = tmp_path / "st"
    Encoder.from_pretrained(tiny_model_dir, pooler="avg").save(str(folder))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "q: ", "x": ""}}))
    assert folder_prompts(Encoder.from_pretrained(str(folder))) == {"query": "q: "}


@pytest.mark.parametrize("task_name", ["STSBenchmark", "SICKRelatedness"])
def test_mteb_evaluate_scores_what_our_evaluator_scores(tiny_encoder, small_dev_data, task_name) -> None:
    task = local_mteb_task(task_name, small_dev_data, stsb_split="dev", sick_mode="dev")
    result = mteb.evaluate(tiny_encoder, task, cache=None, encode_kwargs={"batch_size": 16}, show_progress_bar=False)
    assert not result.exceptions
    scores = result.task_results[0].scores["test"][0]
    ours = evaluate_sts(
        tiny_encoder.encode, [task_name], small_dev_data, stsb_split="dev", sick_mode="dev", align_uniform=False
    )
    assert 100 * scores["cosine_spearman"] == pytest.approx(ours["tasks"][task_name]["score"], abs=1e-6)
    assert scores["spearman"] == pytest.approx(scores["cosine_spearman"], abs=1e-9)  # our similarity is cosine
    assert len(task.dataset["default"]["test"]) == 150  # the small dev data's pairs, nothing downloaded


def test_local_task_rejects_an_unknown_name(small_dev_data) -> None:
    with pytest.raises(ValueError, match="no local data"):
        local_mteb_task("SciFact", small_dev_data)


def test_mteb_meta_revision_follows_the_folder(tiny_model_dir, tmp_path) -> None:
    from simcse import Encoder

    folder = str(tmp_path / "m")
    enc = Encoder.from_pretrained(tiny_model_dir, pooler="avg")
    enc.save(folder)
    first = Encoder.from_pretrained(folder).mteb_model_meta
    with open(os.path.join(folder, "extra.txt"), "w") as f:
        f.write("changed")
    assert Encoder.from_pretrained(folder).mteb_model_meta.revision != first.revision
    assert first.name == "local/m"


@pytest.mark.slow
def test_eval_command_runs_mteb_on_local_data(tiny_model_dir, small_dev_data, tmp_path) -> None:
    from simcse import Encoder
    from tests.helpers.cli import simcse

    out = tmp_path / "mteb.json"
    done = simcse(
        "eval", "--model", tiny_model_dir, "--pooler", "avg", "--mteb", "STSBenchmark", "--mteb-local",
        "--stsb-split", "dev", "--data-dir", small_dev_data, "--no-progress", "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    score = json.loads(out.read_text())["models"][0]["scores"]["STSBenchmark"]
    ours = evaluate_sts(Encoder.from_pretrained(tiny_model_dir, pooler="avg").encode, ["STSBenchmark"],
                        small_dev_data, stsb_split="dev", align_uniform=False)  # fmt: skip
    assert score == pytest.approx(ours["tasks"]["STSBenchmark"]["score"], abs=1e-6)
    assert f"{score:6.2f}" in done.stdout


@pytest.mark.slow
def test_eval_mteb_errors_are_one_line(tiny_model_dir, small_dev_data) -> None:
    from tests.helpers.cli import simcse

    done = simcse("eval", "--model", tiny_model_dir, "--mteb", "SciFact", "--mteb-local", "--data-dir", small_dev_data)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("simcse eval: error: --mteb SciFact: SciFact: no local data")
