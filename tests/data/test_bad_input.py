"""Bad input wherever data enters (training files, STS files, configs, model folders).

Every message names the file (and the line, where there is one) and the problem; a run that fails
on its input leaves the run directory exactly as it was. ``on_bad_line: skip`` counts what it
skipped and reports it at the end. (tests/train/test_training.py and tests/test_sts.py cover the first
cases of each reader; these extend them.)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

import pytest

from simcse import Encoder
from simcse.config import load_config
from simcse.data.cache import load_training_views
from simcse.data.readers import MAX_LINE_CHARS, DataError, read_sentences
from simcse.evaluation.tasks import STSDataError, load_task
from simcse.runs.checkpoints import list_checkpoints
from simcse.runs.folder import STATE_FILE
from simcse.train import train

LONG = " ".join(["the man is playing the guitar"] * 3500)  # 100k characters of real words
assert len(LONG) > 100_000


def cfg_for(model_dir: str, train_file: str, out: str, **kw):
    base = dict(
        model_name_or_path=model_dir, train_file=train_file, batch_size=8, max_seq_len=16, output_dir=out,
        eval_steps=1000, learning_rate=1e-3,
    )  # fmt: skip
    return load_config(None, {**base, **kw})


def snapshot(folder) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under ``folder``, hidden ones included."""
    found: dict[str, bytes | None] = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            found[os.path.relpath(os.path.join(root, d), folder)] = None
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                found[os.path.relpath(os.path.join(root, f), folder)] = fh.read()
    return found


@pytest.fixture
def earlier_run(tmp_path):
    """A run directory holding an earlier run's results, which a failed start must not touch."""
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "keep.txt").write_text("earlier result")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (run / "config.yaml").write_text("seed: 1\n")
    return run


# ------------------------------------------------------------------ training files
TRAINING_CASES = {
    "directory": ("unsup", None, r"{path}: is a directory, expected a file"),
    "missing": ("unsup", "absent", r"{path}: file not found"),
    "nul byte": ("unsup", b"a man\nthe \x00 dog\n", r"{path}:2: contains a NUL byte"),
    "blank-only csv": ("pairs", b"\n  \n\n", r"{path}: file is empty or blank"),
    "header-only csv": ("pairs", b"sent0,sent1\n", r"{path}: no data rows after the header"),
    "missing header": (
        "pairs",
        b"a man plays,a woman sings\nx,y\n",
        r"{path}:1: header 'a man plays,a woman sings' lacks",
    ),
    "header twice": (
        "pairs",
        b"sent0,sent1,sent1\na,b,c\n",
        r"{path}:1: header names column\(s\) sent1 more than once",
    ),
    "too many fields": ("pairs", b"sent0,sent1\na,b\nc,d,e\n", r"{path}:3: expected 2 fields, found 3$"),
    "unclosed quote": (
        "pairs",
        b'sent0,sent1\na,b\n"c,d\ne,f\n',
        r"{path}:3: expected 2 fields, found 1 \(record ends at line 4: unclosed quote\?\)",
    ),
    "invalid utf-8 csv": ("pairs", b"sent0,sent1\na,b\nc,caf\xe9\n", r"{path}:3: invalid UTF-8"),
    "csv field over the csv module's limit": (
        "pairs",
        b"sent0,sent1\n" + b"x" * 200_000 + b",y\n",
        r"{path}:2: malformed CSV \(field larger than",
    ),
}


@pytest.mark.parametrize("case", list(TRAINING_CASES))
def test_bad_training_file_is_named_and_the_run_dir_untouched(tiny_model_dir, tmp_path, earlier_run, case):
    mode, content, message = TRAINING_CASES[case]
    path = tmp_path / ("data.csv" if mode != "unsup" else "data.txt")
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    before = snapshot(earlier_run)
    cfg = cfg_for(tiny_model_dir, str(path), str(earlier_run), mode=mode, mlp_only_train=mode == "unsup")
    with pytest.raises(DataError) as err:
        train(cfg)
    assert err.match(message.format(path=re.escape(str(path))))
    assert snapshot(earlier_run) == before  # nothing overwritten, nothing half-written, no temp files


def test_skipped_lines_are_counted_and_reported_at_the_end(tiny_model_dir, tmp_path, small_dev_data, caplog):
    good = [f"the man {w},a woman {w}" for w in "abcdefghijklmnop"]  # 16 good pairs
    lines = [
        "sent0,sent1", *good[:5], "", "only one field", *good[5:10], "x,", f"{LONG},y",
    ]  # fmt: skip
    path = tmp_path / "pairs.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"caf\xe9,x\n" + ("\n".join(good[10:]) + "\n").encode())
    out = str(tmp_path / "run")
    cfg = cfg_for(
        tiny_model_dir, str(path), out, mode="pairs", on_bad_line="skip", max_steps=1, data_dir=small_dev_data,
        mlp_only_train=False,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="simcse"):
        state = train(cfg)
    expected = {"blank_lines": 1, "bad_lines": 3, "truncated_lines": 1}
    assert state["data"] == expected
    with open(os.path.join(list_checkpoints(out)[-1], STATE_FILE), encoding="utf-8") as f:
        assert json.load(f)["data"] == expected  # recorded in the run's final state on disk too
    # when reading: the counts and the first bad line, by file and line; at the end: the summary
    assert f"first bad: {path}:8: expected 2 fields, found 1" in caplog.text
    assert "skipped: 1 blank lines, 3 bad lines, 1 truncated lines; 0 step(s) with a non-finite loss" in caplog.messages


def test_a_100k_character_line_is_cut_and_tokenized_to_max_seq_len(tiny_model_dir, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(["a man is playing", LONG, *["the dog runs"] * 14]) + "\n", encoding="utf-8")
    sentences, report = read_sentences(str(path))
    assert len(sentences[1]) == MAX_LINE_CHARS and report.truncated_lines == 1
    cfg = cfg_for(tiny_model_dir, str(path), str(tmp_path / "run"), max_seq_len=16)
    from transformers import AutoTokenizer

    views = load_training_views(cfg, AutoTokenizer.from_pretrained(tiny_model_dir), verbose=False)
    lengths = [len(ids) for ids in views.features[0]["input_ids"]]
    assert lengths[1] == 16 and max(lengths) == 16
    assert views.collate(list(range(8)))["input_ids"].shape == (16, 16)  # (views * batch, max_seq_len)
    assert views.report["truncated_lines"] == 1


def test_bom_written_by_spreadsheets_does_not_hide_the_header(tiny_model_dir, tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"\xef\xbb\xbfsent0,sent1\n" + b"a man,a woman\n" * 8)
    cfg = cfg_for(tiny_model_dir, str(path), str(tmp_path / "run"), mode="pairs")
    from transformers import AutoTokenizer

    assert len(load_training_views(cfg, AutoTokenizer.from_pretrained(tiny_model_dir), verbose=False)) == 8


# ------------------------------------------------------------------ STS files
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"{path}: no scored pairs \(file is empty or blank\)"),
        (b"sentence1\tsentence2\tscore\na\tb\t1\n", r"{path}:1: score 'score' is not a number"),
        (b"a\tb\t1\nc\td\tinf\n", r"{path}:2: score inf is outside \[0.0, 5.0\]"),
        (b"a\tb\t1\n \td\t2\n", r"{path}:2: empty sentence"),
    ],
)
def test_bad_sts_file_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "custom.tsv"
    path.write_bytes(content)
    with pytest.raises(STSDataError) as err:
        load_task(str(path))
    assert err.match(message.format(path=re.escape(str(path))))


def test_sts_path_that_is_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: is a directory, expected a file")):
        load_task(str(tmp_path))


def test_sts_100k_character_sentence_is_encoded_within_max_seq_length(tiny_encoder, tmp_path):
    path = tmp_path / "custom.tsv"
    path.write_text(f"a man\t{LONG}\t4.0\n", encoding="utf-8")
    pairs = load_task(str(path)).subsets[0]
    assert len(pairs.sentences2[0]) > 100_000
    assert len(tiny_encoder.tokenize(pairs.sentences2)["input_ids"][0]) == tiny_encoder.max_seq_length
    assert tiny_encoder.encode(list(pairs.sentences2)).shape == (1, tiny_encoder.dim)


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"- learning_rate\n- 3e-5\n", r"{path}: expected a mapping of config keys"),
        (b"just a string\n", r"{path}: expected a mapping of config keys"),
        (b"batch_size: [8, 16]\n", r"{path}: batch_size=\[8, 16\]: expected a single value, got a list"),
        (b"learning_rate: {value: 1}\n", r"{path}: learning_rate=.*expected a single value, got a dict"),
        (b"max_steps: true\n", r"{path}: max_steps=True: expected a number"),
        (b"num_epochs: 1.5\n", r"{path}: num_epochs=1.5: expected an integer"),
        (b"mixed_precision: no\n", r"{path}: mixed_precision=False: .*YAML reads unquoted yes/no"),
        (b"temperature: -1\n", r"{path}: temperature must be > 0"),
        (b"max_nonfinite_steps: 0\n", r"{path}: max_nonfinite_steps must be >= 1"),
        (b"seed: 1\nbatch_size: [1,\n", r"{path}:3: not valid YAML \(expected the node content"),
        (b"seed: 1\noutput_dir: caf\xe9\n", r"{path}:2: invalid UTF-8"),
    ],
)
def test_bad_config_names_the_file(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_bytes(text)
    with pytest.raises(ValueError) as err:
        load_config(str(path))
    assert err.match(message.format(path=re.escape(str(path))))


def test_config_out_of_range_from_the_command_line_says_so(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\n")
    with pytest.raises(ValueError, match=re.escape(f"{path} + command line: keep_last_n must be >= 1")):
        load_config(str(path), {"keep_last_n": "0"})
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: config file is a directory")):
        load_config(str(tmp_path))


# ------------------------------------------------------------------ model folders
def _copy(src: str, dst, names: list[str]) -> str:
    os.makedirs(dst, exist_ok=True)
    for name in names:
        shutil.copy(os.path.join(src, name), dst)
    return str(dst)


def _truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(1000)


TOKENIZER = ["tokenizer.json", "tokenizer_config.json"]


def _no_weights(tiny, saved, d):
    return _copy(tiny, d, ["config.json", *TOKENIZER])


def _no_tokenizer(tiny, saved, d):
    return _copy(tiny, d, ["config.json", "model.safetensors"])


def _only_tokenizer(tiny, saved, d):
    return _copy(tiny, d, TOKENIZER)


def _head_weights_missing(tiny, saved, d):
    shutil.copytree(saved, d)
    os.remove(os.path.join(d, "simcse_head.safetensors"))
    return str(d)


def _head_weights_damaged(tiny, saved, d):
    shutil.copytree(saved, d)
    _truncate(os.path.join(d, "simcse_head.safetensors"))
    return str(d)


def _own_config_without_pooler(tiny, saved, d):
    shutil.copytree(saved, d)
    with open(os.path.join(d, "simcse_config.json"), "w") as f:
        json.dump({"head": None}, f)
    return str(d)


def _weights_damaged(tiny, saved, d):
    path = _copy(tiny, d, ["config.json", "model.safetensors", *TOKENIZER])
    _truncate(os.path.join(path, "model.safetensors"))
    return path


def _other_kind_of_model(tiny, saved, d):
    path = _copy(tiny, d, ["model.safetensors", *TOKENIZER])
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 200}, f)
    return path


def _training_checkpoint(tiny, saved, d):
    path = os.path.join(d, "run", "checkpoints", "step-00000010")
    _copy(tiny, path, ["model.safetensors"])
    with open(os.path.join(path, STATE_FILE), "w") as f:
        json.dump({"step": 10}, f)
    return path


def _run_directory(tiny, saved, d):
    shutil.copytree(saved, os.path.join(d, "model"))
    return str(d)


MODEL_CASES = [
    (_no_weights, FileNotFoundError, r"{path}: incomplete model folder, missing model weights"),
    (_no_tokenizer, FileNotFoundError, r"{path}: incomplete model folder, missing tokenizer files"),
    (_only_tokenizer, FileNotFoundError, r"{path}: not a model folder \(no config.json .*found only tokenizer.json"),
    (_head_weights_missing, FileNotFoundError, r"{path}: simcse_config.json names a head but simcse_head.safetensors"),
    (_head_weights_damaged, ValueError, r"{path}/simcse_head.safetensors: cannot load the head"),
    (_own_config_without_pooler, ValueError, r"{path}/simcse_config.json: expected a JSON object with a 'pooler'"),
    (_weights_damaged, OSError, r"{path}: cannot load the model \(SafetensorError"),
    (_other_kind_of_model, ValueError, r"{path}: the weights do not fit its config \(model_type 'gpt2'\)"),
    (_training_checkpoint, FileNotFoundError, r"{path}: .*a training checkpoint.*the trained model is in .*run/model"),
    (_run_directory, FileNotFoundError, r"{path}: .*did you mean {path}/model\?"),
]


@pytest.fixture(scope="module")
def saved_with_head(tiny_model_dir, tmp_path_factory) -> str:
    """A folder saved by Encoder.save with a head (simcse_config.json + simcse_head.safetensors)."""
    path = str(tmp_path_factory.mktemp("saved") / "model")
    Encoder.from_pretrained(tiny_model_dir, pooler="cls").save(path)
    assert os.path.isfile(os.path.join(path, "simcse_head.safetensors"))
    return path


@pytest.mark.parametrize(("build", "error", "message"), MODEL_CASES, ids=[c[0].__name__[1:] for c in MODEL_CASES])
def test_incomplete_or_wrong_model_folder_says_what_is_wrong(
    tiny_model_dir, saved_with_head, tmp_path, build, error, message
):
    path = build(tiny_model_dir, saved_with_head, tmp_path / "folder")
    with pytest.raises(error) as err:
        Encoder.from_pretrained(path)
    assert err.match(message.format(path=re.escape(path)))


def test_missing_model_path_is_not_taken_for_a_hub_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}/runs/x/model: no such model folder")):
        Encoder.from_pretrained(str(tmp_path / "runs" / "x" / "model"))
