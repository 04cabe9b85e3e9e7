"""Publishing to the Hugging Face Hub, without network: the files a push uploads, the card it uploads,
the repository it creates (private by default), and the one-line error without a token."""

from __future__ import annotations

import os
from typing import ClassVar

import huggingface_hub
import pytest

from simcse.cli import main
from simcse.publish import files_to_upload, hub_card, push_to_hub
from tests.helpers.data import write_triplets


class RecordingApi:
    """Stands in for ``huggingface_hub.HfApi``: records the calls a push makes, sends nothing."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, token: str | None = None) -> None:
        self.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id: str, **kw) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, **kw) -> None:
        self.calls.append(("create_commit", kw))


@pytest.fixture
def hub(monkeypatch):
    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_stored")
    return RecordingApi.calls


def _uploaded(calls) -> dict[str, bytes | str]:
    (commit,) = [kw for name, kw in calls if name == "create_commit"]
    return {op.path_in_repo: op.path_or_fileobj for op in commit["operations"]}


def _touch(root, *paths: str) -> None:
    for rel in paths:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("x")


def test_files_to_upload_keeps_the_model_and_leaves_run_state(tmp_path) -> None:
    model = tmp_path / "model"
    kept = [
        "config.json", "model.safetensors", "tokenizer.json", "README.md", "training_curves.png", "modules.json",
        "1_Pooling/config.json", "2_Dense/model.safetensors", "onnx/model.onnx", "onnx/model_qint8_avx512.onnx",
    ]  # fmt: skip
    left = ["checkpoints/step-2/model.safetensors", ".simcse.lock", "upload.lock", ".README.md.tmp-1234",
            "model.safetensors.tmp", ".cache/huggingface/x", "onnx/.model.onnx.tmp-9"]  # fmt: skip
    _touch(model, *kept, *left)
    assert files_to_upload(str(model)) == sorted(kept)
    with pytest.raises(ValueError, match="a training run folder; push its model"):
        files_to_upload(str(tmp_path))  # the run folder holding model/
    with pytest.raises(ValueError, match="not a model folder"):
        files_to_upload(str(model / "onnx"))


def test_hub_card_points_usage_at_the_repository() -> None:
    card = '---\ntags: [simcse]\n---\nEncoder.from_pretrained("runs/x/model")\nSentenceTransformer("runs/x/model")\n'
    assert (
        hub_card(card, "me/x")
        == '---\ntags: [simcse]\n---\nEncoder.from_pretrained("me/x")\nSentenceTransformer("me/x")\n'
    )


def test_train_push_to_hub_uploads_the_trained_folder(tiny_model_dir, tmp_path, shared_data, hub, capsys) -> None:
    data = tmp_path / "nli.csv"
    write_triplets(data, n=32)
    out = str(tmp_path / "run")
    args = [
        "train", "--model_name_or_path", tiny_model_dir, "--train_file", str(data), "--mode", "triplets",
        "--data_dir", shared_data, "--output_dir", out, "--batch_size", "8", "--max_seq_len", "16",
        "--max_steps", "2", "--eval_steps", "2", "--push_to_hub", "me/tiny-simcse",
    ]  # fmt: skip
    assert main(args) == 0
    assert "pushed: https://huggingface.co/me/tiny-simcse (private)" in capsys.readouterr().out
    create = [kw for name, kw in hub if name == "create_repo"]
    assert create == [{"repo_id": "me/tiny-simcse", "repo_type": "model", "private": True, "exist_ok": True}]
    assert ("init", {"token": "hf_stored"}) in hub
    uploaded = _uploaded(hub)
    folder = os.path.join(out, "model")
    assert sorted(uploaded) == files_to_upload(folder)
    assert {"README.md", "config.json", "model.safetensors", "training_curves.png", "modules.json"} <= set(uploaded)
    assert not any(p.startswith("checkpoints") or p.endswith(".lock") for p in uploaded)
    assert uploaded["config.json"] == os.path.join(folder, "config.json")  # files go from disk
    card = uploaded["README.md"].decode("utf-8")
    assert card.startswith("---\n") and "pipeline_tag: sentence-similarity" in card
    assert 'Encoder.from_pretrained("me/tiny-simcse")' in card and f'"{folder}"' not in card
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as f:
        assert f'Encoder.from_pretrained("{folder}")' in f.read()  # the local card is left as it was


def test_push_command(tiny_model_dir, tmp_path, hub, capsys) -> None:
    folder = tmp_path / "model"
    _touch(folder, "config.json", "model.safetensors", "README.md", ".simcse.lock", "checkpoints/a.bin")
    assert main(["push", str(folder), "me/x", "--dry-run"]) == 0
    assert capsys.readouterr().out.split() == ["README.md", "config.json", "model.safetensors"]
    assert hub == []  # a dry run contacts nothing
    assert main(["push", str(folder), "org/x", "--public", "--token", "hf_given"]) == 0
    assert "https://huggingface.co/org/x (public): 3 files" in capsys.readouterr().out
    assert hub[0] == ("init", {"token": "hf_given"}) and hub[1][1]["private"] is False
    assert main(["push", str(folder), "no-owner"]) == 1
    assert "expected user/name or org/name" in capsys.readouterr().err


def test_without_a_token_one_line_says_how_to_log_in(tiny_model_dir, tmp_path, hub, monkeypatch, capsys) -> None:
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    folder = tmp_path / "model"
    _touch(folder, "config.json")
    assert main(["push", str(folder), "me/x"]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == "simcse push: error: no Hugging Face token: log in with `hf auth login`, or set HF_TOKEN, or pass --token\n"
    )
    # training refuses before it starts, not after hours of work
    args = ["train", "--model_name_or_path", tiny_model_dir, "--train_file", "missing.txt", "--push_to_hub", "me/x"]
    assert main(args) == 1
    assert "no Hugging Face token" in capsys.readouterr().err
    assert hub == [] and not os.path.exists("runs/simcse")


def test_push_to_hub_with_a_given_api(tmp_path) -> None:
    folder = tmp_path / "m"
    _touch(folder, "config.json", "onnx/model.onnx")
    RecordingApi.calls = []
    url = push_to_hub(str(folder), "me/m", api=RecordingApi(), commit_message="first")
    assert url == "https://huggingface.co/me/m"
    commit = RecordingApi.calls[-1][1]
    assert commit["commit_message"] == "first" and sorted(_uploaded(RecordingApi.calls)) == [
        "config.json",
        "onnx/model.onnx",
    ]


@pytest.mark.parametrize("command", ["push", "mine", "search", "encode"])
def test_help_shows_an_example(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"examples:\n  simcse {command} " in capsys.readouterr().out
