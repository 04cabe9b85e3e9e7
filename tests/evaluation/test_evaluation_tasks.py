"""STS loaders: SentEval's pair counts on the shared data, whitespace handling, and clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from simcse import STSDataError, load_task
from simcse.data_dir import ENV_VAR, resolve_data_dir, senteval_dir
from simcse.evaluation.tasks import TASKS, load_custom

# SentEval's scored pairs per subset (an empty gold line is an unscored pair, skipped)
STS_YEARS = {
    "STS12": {"MSRpar": 750, "MSRvid": 750, "SMTeuroparl": 459, "surprise.OnWN": 750, "surprise.SMTnews": 399},
    "STS13": {"FNWN": 189, "headlines": 750, "OnWN": 561},
    "STS14": {"deft-forum": 450, "deft-news": 300, "headlines": 750, "images": 750, "OnWN": 750, "tweet-news": 750},
    "STS15": {"answers-forums": 375, "answers-students": 750, "belief": 375, "headlines": 750, "images": 750},
    "STS16": {"answer-answer": 254, "headlines": 249, "plagiarism": 230, "postediting": 244, "question-question": 209},
}
TOTALS = {"STS12": 3108, "STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186}


@pytest.mark.parametrize("task", sorted(STS_YEARS))
def test_sts_years_have_senteval_pair_counts(shared_data: str, task: str) -> None:
    loaded = load_task(task, shared_data)
    assert {s.name: len(s) for s in loaded.subsets} == STS_YEARS[task]
    assert sum(len(s) for s in loaded.subsets) == TOTALS[task]
    for sub in loaded.subsets:
        assert len(sub.sentences1) == len(sub.sentences2) == len(sub.scores)
        assert ((sub.scores >= 0) & (sub.scores <= 5)).all()


@pytest.mark.parametrize(("split", "n"), [("test", 1379), ("dev", 1500), ("train", 5749)])
def test_stsb_splits(shared_data: str, split: str, n: int) -> None:
    task = load_task("STSBenchmark", shared_data, stsb_split=split)
    assert task.name == "STSBenchmark" and [(s.name, len(s)) for s in task.subsets] == [(split, n)]


@pytest.mark.parametrize(("mode", "n"), [("test", 4927), ("dev", 500), ("full", 9927)])
def test_sick_modes(shared_data: str, mode: str, n: int) -> None:
    task = load_task("SICKRelatedness", shared_data, sick_mode=mode)
    assert len(task.subsets[0]) == n
    assert ((task.subsets[0].scores >= 1) & (task.subsets[0].scores <= 5)).all()


def test_stsb_rows_with_trailing_source_notes_read_by_position(shared_data: str) -> None:
    path = os.path.join(shared_data, "senteval", "STS", "STSBenchmark", "sts-test.csv")
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    long_rows = [i for i, r in enumerate(rows) if len(r) > 7]
    assert long_rows, "the test split has rows with extra columns"
    task = load_task("STSBenchmark", shared_data).subsets[0]
    for i in long_rows[:20]:
        assert task.sentences1[i] == " ".join(rows[i][5].split())
        assert task.scores[i] == float(rows[i][4])


def test_every_sentence_is_whitespace_normalised(shared_data: str) -> None:
    for name in TASKS:
        for sub in load_task(name, shared_data).subsets:
            for s in (*sub.sentences1, *sub.sentences2):
                assert s == " ".join(s.split()), (name, sub.name, s)


def test_senteval_folder_itself_works_as_data_dir(shared_data: str) -> None:
    assert len(load_task("STS13", os.path.join(shared_data, "senteval")).subsets) == 3


def test_data_dir_falls_back_to_env_then_data(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert resolve_data_dir("given") == "given" and resolve_data_dir() == str(tmp_path)
    monkeypatch.delenv(ENV_VAR)
    assert resolve_data_dir() == "data"


def test_missing_data_dir_names_expected_path_and_download(tmp_path) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        load_task("STSBenchmark", missing)
    message = str(err.value)
    assert os.path.join(missing, "senteval", "STS") in message
    assert "scripts/download_data.sh" in message
    with pytest.raises(FileNotFoundError, match="download_data.sh"):
        senteval_dir(missing)


def test_missing_file_inside_data_dir_names_it(tmp_path) -> None:
    (tmp_path / "STS" / "STS12-en-test").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"STS\.input\.MSRpar\.txt: not found.*download_data\.sh"):
        load_task("STS12", str(tmp_path))


def test_unknown_task_and_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown task 'STS99'"):
        load_task("STS99")
    with pytest.raises(ValueError, match="STS-B split"):
        load_task("STSBenchmark", stsb_split="validation")
    with pytest.raises(ValueError, match="SICK mode"):
        load_task("SICKRelatedness", sick_mode="all")


# ------------------------------------------------------------------ custom files
def _write(tmp_path, content: bytes | str, name: str = "custom.tsv") -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return str(path)


def test_custom_file_loads_and_normalises_whitespace(tmp_path) -> None:
    path = _write(tmp_path, "  a   man\u00a0plays \ta man playing\t4.5\n\nthe cat\ta dog\t0\r\nx\ty\t5.0\n")
    task = load_custom(path)
    assert task.name == "custom" and len(task.subsets[0]) == 3
    assert task.subsets[0].sentences1 == ("a man plays", "the cat", "x")
    assert task.subsets[0].sentences2 == ("a man playing", "a dog", "y")
    np.testing.assert_array_equal(task.subsets[0].scores, [4.5, 0.0, 5.0])
    assert load_task(path).subsets[0].sentences1 == task.subsets[0].sentences1


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("a\tb\t1\na\tb\n", 2, "expected 3 tab-separated columns, found 2"),
        ("a\tb\t1\na\tb\t2\tc\n", 2, "expected 3 tab-separated columns, found 4"),
        ("a\tb\t1\n\na\tb\thigh\n", 3, "score 'high' is not a number"),
        ("a\tb\t5.5\n", 1, "outside [0.0, 5.0]"),
        ("a\tb\t-1\n", 1, "outside [0.0, 5.0]"),
        ("a\tb\tnan\n", 1, "outside [0.0, 5.0]"),
        (b"a\tb\t1\nc\td\t2\ncaf\xe9\tx\t3\n", 3, "invalid UTF-8"),
    ],
)
def test_bad_custom_file_names_file_line_and_problem(tmp_path, content, line: int, problem: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(STSDataError) as err:
        load_task(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert problem in message


def test_custom_file_without_pairs_or_missing(tmp_path) -> None:
    with pytest.raises(STSDataError, match="no scored pairs"):
        load_custom(_write(tmp_path, "\n\n"))
    missing = str(tmp_path / "nope.tsv")
    with pytest.raises(FileNotFoundError, match="nope.tsv: STS file not found"):
        load_task(missing)


def test_bad_senteval_gold_file_names_its_line(tmp_path) -> None:
    folder = tmp_path / "STS" / "STS13-en-test"
    folder.mkdir(parents=True)
    for subset in ("FNWN", "headlines", "OnWN"):
        (folder / f"STS.input.{subset}.txt").write_text("a\tb\nc\td\ne\tf\n", encoding="utf-8")
        (folder / f"STS.gs.{subset}.txt").write_text("1\n\n2\n", encoding="utf-8")
    assert [len(s) for s in load_task("STS13", str(tmp_path)).subsets] == [2, 2, 2]  # empty gold = skipped
    (folder / "STS.gs.OnWN.txt").write_text("1\n2\n7\n", encoding="utf-8")
    with pytest.raises(STSDataError, match=r"STS\.gs\.OnWN\.txt:3: score 7\.0 is outside"):
        load_task("STS13", str(tmp_path))
    (folder / "STS.gs.OnWN.txt").write_text("1\n2\n", encoding="utf-8")
    with pytest.raises(STSDataError, match="2 gold lines for 3 pairs"):
        load_task("STS13", str(tmp_path))
