"""Retrieval evaluation against independent references: pytrec_eval (trec_eval), sentence-transformers'
InformationRetrievalEvaluator and MTEB 2; exact chunked search; the BEIR and column readers' one-line errors;
the STS-B retrieval set the script builds."""

from __future__ import annotations

import importlib.util
import json
import os
from typing import ClassVar

import numpy as np
import pytest
import pytrec_eval
import torch

from simcse.evaluation.ranking import decode, ranking_metrics, search
from simcse.evaluation.retrieval import RetrievalEvaluator
from simcse.evaluation.retrieval_data import RetrievalData, load_beir, load_retrieval_pairs, write_beir
from simcse.evaluation.tables import EvalDataError
from tests.helpers.paths import REPO

ALL_CUTOFFS = {"ndcg": [1, 3, 10], "mrr": [1, 10], "map": [3, 100], "recall": [1, 10, 100], "precision": [1, 5]}
TREC = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P"}


def build_script():
    spec = importlib.util.spec_from_file_location(
        "build_retrieval_dev", os.path.join(REPO, "scripts", "bench", "build_retrieval_dev.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Table:
    """An encoder that looks vectors up by text (so a test controls every score, ties included)."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors, self.calls = vectors, []

    def encode(self, texts, batch_size=32, prompt=None, **kwargs):
        self.calls.append((len(texts), prompt, kwargs.get("prompt_name")))
        return np.stack([self.vectors[(prompt or "") + t] for t in texts])


def random_set(seed: int = 0, n_queries: int = 30, n_docs: int = 250, dim: int = 6) -> tuple[RetrievalData, Table]:
    """Graded judgements (0-2), up to 12 relevant documents a query, and exact ties (duplicate vectors)."""
    rng = np.random.default_rng(seed)
    queries = {f"q{i:02d}": f"query {i}" for i in range(n_queries)}
    corpus = {f"doc{i:03d}": f"text {i}" for i in range(n_docs)}
    vectors = {t: rng.standard_normal(dim).astype(np.float32) for t in (*queries.values(), *corpus.values())}
    for i in range(0, min(120, n_docs - 1), 2):  # pairs of documents with the same vector: tied for every query
        vectors[f"text {i + 1}"] = vectors[f"text {i}"]
    for i in range(min(10, n_queries, max(0, n_docs - 211))):  # a query's own vector, twice: ties at rank 1
        vectors[f"text {200 + i}"] = vectors[f"text {201 + i}"] = vectors[f"query {i}"]
    qrels = {}
    for i, q in enumerate(queries):
        docs = rng.choice(n_docs, size=int(rng.integers(1, 13)), replace=False)
        qrels[q] = {f"doc{d:03d}": int(rng.integers(0, 3)) for d in docs}
        if i < min(10, max(0, n_docs - 211)):
            qrels[q][f"doc{201 + i}"] = 1  # the later of two tied documents is relevant
    return RetrievalData(queries, corpus, qrels), Table(vectors)


def trec_reference(data: RetrievalData, table: Table, cutoffs: dict) -> dict[str, float]:
    """pytrec_eval on every (query, document) score (cosine of float32 vectors, rounded to float32, as ours)."""
    q = torch.nn.functional.normalize(
        torch.from_numpy(np.stack([table.vectors[t] for t in data.queries.values()])), dim=-1
    )
    d = torch.nn.functional.normalize(
        torch.from_numpy(np.stack([table.vectors[t] for t in data.corpus.values()])), dim=-1
    )
    scores = (q @ d.T).numpy()
    judged = {qid: docs for qid, docs in data.qrels.items() if any(r > 0 for r in docs.values())}
    run = {qid: {did: float(scores[i, j]) for j, did in enumerate(data.corpus)} for i, qid in enumerate(data.queries)}
    run = {qid: docs for qid, docs in run.items() if qid in judged}
    measures = {f"{TREC[m]}.{','.join(map(str, ks))}" for m, ks in cutoffs.items() if m in TREC}
    per_query = pytrec_eval.RelevanceEvaluator(judged, measures).evaluate(run)
    out = {
        f"{m}@{k}": np.mean([r[f"{TREC[m]}_{k}"] for r in per_query.values()])
        for m, ks in cutoffs.items()
        if m in TREC
        for k in ks
    }
    for k in cutoffs.get("mrr", []):  # trec_eval's reciprocal rank has no cut-off: evaluate the top k alone
        top = {
            qid: dict(sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)[:k]) for qid, docs in run.items()
        }
        rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top)
        out[f"mrr@{k}"] = np.mean([r["recip_rank"] for r in rr.values()])
    return out


# ------------------------------------------------------------------ metrics and search
@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_metrics_equal_pytrec_eval_with_graded_judgements_and_ties(chunk: int) -> None:
    data, table = random_set()
    ours = RetrievalEvaluator(data, "r", cutoffs=ALL_CUTOFFS, corpus_chunk_size=chunk)(table)
    reference = trec_reference(data, table, ALL_CUTOFFS)
    assert set(ours) == {f"r/{k}" for k in reference} | {"r/alignment", "r/uniformity"}
    for key, value in reference.items():
        assert ours[f"r/{key}"] == pytest.approx(value, abs=1e-6), key


def test_ties_rank_the_greater_id_first_as_trec_eval() -> None:
    ranked = ranking_metrics([["b", "a"]], [{"a": 1}], {"mrr": [1]})
    assert ranked["mrr@1"] == 0.0  # (pure metric: the order given is used)
    data = RetrievalData({"q": "x"}, {"a": "same", "b": "same", "c": "other"}, {"q": {"a": 1}})
    table = Table({"x": np.array([1.0, 0.0]), "same": np.array([1.0, 0.0]), "other": np.array([0.0, 1.0])})
    ours = RetrievalEvaluator(data, "r", cutoffs={"mrr": [1, 2]})(table)
    trec = pytrec_eval.RelevanceEvaluator({"q": {"a": 1}}, {"recip_rank"}).evaluate({"q": {"a": 1.0, "b": 1.0}})
    assert ours["r/mrr@1"] == 0.0 and ours["r/mrr@2"] == 0.5 == trec["q"]["recip_rank"]


def test_chunked_search_equals_a_full_sort_and_keeps_k_per_query() -> None:
    gen = torch.Generator().manual_seed(0)
    queries, corpus = torch.randn(9, 5, generator=gen), torch.randn(300, 5, generator=gen).round(decimals=1)
    corpus[150:] = corpus[:150]  # every score tied with another document's
    chunks = [(corpus[s : s + 37], torch.arange(s, s + len(corpus[s : s + 37]))) for s in range(0, 300, 37)]
    top = search(queries, chunks, k=20, max_scores=50)
    assert top.keys.shape == (9, 20)
    scores, index = decode(top.keys)
    full = (queries.double() @ corpus.double().T).float()  # (9, 300)
    for row in range(9):  # best score first, ties by lower position
        expected = sorted(range(300), key=lambda j: (-full[row, j].item(), j))[:20]
        assert index[row].tolist() == expected
        torch.testing.assert_close(scores[row], full[row, expected], rtol=0, atol=0)


def test_a_corpus_smaller_than_k_ranks_every_document() -> None:
    data, table = random_set(n_docs=250)
    small = RetrievalData(data.queries, dict(list(data.corpus.items())[:40]), data.qrels)
    small = RetrievalData(
        small.queries,
        small.corpus,
        {q: {d: r for d, r in j.items() if d in small.corpus} for q, j in data.qrels.items()},
    )
    ours = RetrievalEvaluator(small, "r", cutoffs=ALL_CUTOFFS)(table)
    for key, value in trec_reference(small, table, ALL_CUTOFFS).items():
        assert ours[f"r/{key}"] == pytest.approx(value, abs=1e-6), key


# ------------------------------------------------------------------ peers: sentence-transformers, MTEB
@pytest.fixture(scope="module")
def stsb_set(shared_data: str) -> RetrievalData:
    """The built STS-B retrieval set, dev split, trimmed to its judged passages and 300 others."""
    data, qrels = build_script().build(shared_data, distractors="eval")
    judged = qrels["dev"]
    keep = {d for docs in judged.values() for d in docs} | set(list(data.corpus)[-300:])
    return RetrievalData(
        {q: data.queries[q] for q in judged}, {d: t for d, t in data.corpus.items() if d in keep}, judged
    )


@pytest.mark.slow  # a real sentence-transformers run
def test_equals_sentence_transformers_information_retrieval_evaluator(spread_model_dir: str, stsb_set) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    model = SentenceTransformer(spread_model_dir, device="cpu")
    ours = RetrievalEvaluator(stsb_set, "r", cutoffs={**ALL_CUTOFFS, "precision": [1, 10]})(model, batch_size=16)
    relevant = {q: set(docs) for q, docs in stsb_set.qrels.items()}
    theirs = InformationRetrievalEvaluator(
        stsb_set.queries, stsb_set.corpus, relevant, mrr_at_k=[1, 10], ndcg_at_k=[1, 3, 10], map_at_k=[3, 100],
        precision_recall_at_k=[1, 10, 100], write_csv=False, name="st",
    )(model)  # fmt: skip
    compared = [(m, k) for m, ks in ALL_CUTOFFS.items() for k in ks if f"st_cosine_{m}@{k}" in theirs]
    assert len(compared) >= 11  # binary judgements, no ties, <= k relevant a query: the definitions agree
    for m, k in compared:
        assert ours[f"r/{m}@{k}"] == pytest.approx(theirs[f"st_cosine_{m}@{k}"], abs=1e-6), f"{m}@{k}"


@pytest.mark.slow  # a real mteb.evaluate run
def test_equals_mteb_on_the_same_local_task(spread_model_dir: str, stsb_set) -> None:
    import mteb

    from simcse import Encoder
    from simcse.evaluation.mteb_tasks import local_mteb_retrieval_task

    encoder = Encoder.from_pretrained(spread_model_dir, pooler="avg").eval()
    ours = RetrievalEvaluator(stsb_set, "r", cutoffs={"ndcg": [1, 10], "map": [100], "recall": [1, 100], "mrr": [10]})(
        encoder
    )
    result = mteb.evaluate(encoder, local_mteb_retrieval_task(stsb_set), cache=None, show_progress_bar=False)
    [scores] = result.task_results[0].scores["test"]
    assert scores["main_score"] == scores["ndcg_at_10"]
    assert scores["mrr_at_10"] == pytest.approx(ours["r/mrr@10"], abs=1e-9)  # MTEB rounds the others to 5 decimals
    for ours_key, theirs_key in [("ndcg@1", "ndcg_at_1"), ("ndcg@10", "ndcg_at_10"), ("map@100", "map_at_100"),
                                 ("recall@1", "recall_at_1"), ("recall@100", "recall_at_100")]:  # fmt: skip
        assert ours[f"r/{ours_key}"] == pytest.approx(scores[theirs_key], abs=5e-6), ours_key


# ------------------------------------------------------------------ prompts
def test_each_side_gets_its_prompt() -> None:
    data, table = random_set(n_queries=4, n_docs=20)
    table.vectors.update({"q: " + t: v for t, v in table.vectors.items()})
    RetrievalEvaluator(data, "r", query_prompt="q: ", corpus_chunk_size=8)(table)
    assert table.calls == [(4, "q: ", None), (8, None, None), (8, None, None), (4, None, None)]

    class Named(Table):
        prompts: ClassVar = {"query": "Q ", "document": "D "}  # as a sentence-transformers model holds them

    named = Named(table.vectors)
    RetrievalEvaluator(data, "r", corpus_chunk_size=20)(named)
    assert named.calls == [(4, None, "query"), (20, None, "document")]  # as encode_query / encode_document pick
    named.calls.clear()
    RetrievalEvaluator(data, "r", query_prompt="q: ", document_prompt_name="passage", corpus_chunk_size=20)(named)
    assert named.calls == [(4, "q: ", None), (20, None, "passage")]


# ------------------------------------------------------------------ readers and their errors
def test_beir_round_trip_and_titles(tmp_path) -> None:
    data, _ = random_set(n_queries=5, n_docs=12)
    folder = write_beir(tmp_path / "set", data, {"dev": data.qrels})
    back = load_beir(folder, "dev")
    assert back.corpus == data.corpus and back.qrels == data.qrels and set(back.queries) == set(data.qrels)
    (tmp_path / "set" / "corpus.jsonl").write_text(json.dumps({"_id": 7, "title": "T", "text": "body"}) + "\n")
    (tmp_path / "set" / "qrels" / "dev.tsv").write_text("q00\t7\t1\n")
    assert load_beir(folder, "dev").corpus == {"7": "T body"}  # BEIR and MTEB embed "title text"


D1 = '{"_id": "d1", "text": "a"}\n'
BAD_BEIR = [
    (D1, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\n", "dev.tsv:3: query id 'q9' is not in queries.jsonl"),
    (D1, "q1\td2\t1\n", "dev.tsv:1: document id 'd2' is not in corpus.jsonl"),
    ("\n", "q1\td1\t1\n", "corpus.jsonl: no documents (the file is empty)"),
    (D1 + D1, "q1\td1\t1\n", "corpus.jsonl:2: document id 'd1' appears twice (first at line 1)"),
    ('{"_id": "d1", "text": ""}\n', "q1\td1\t1\n", "corpus.jsonl:1: text is empty"),
    (D1, "q1\td1\thigh\n", "dev.tsv:1: score 'high' is not an integer >= 0"),
    (D1, "q1\td1\t0\n", "dev.tsv: no relevant document (no line with score > 0)"),
    (D1, "q1 d1 1\n", "dev.tsv:1: expected 3 tab-separated fields"),
]


@pytest.mark.parametrize(("corpus", "qrels", "expected"), BAD_BEIR)
def test_bad_beir_folder_is_one_line_naming_file_and_line(tmp_path, corpus, qrels, expected) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(corpus)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (tmp_path / "qrels" / "dev.tsv").write_text(qrels)
    with pytest.raises(EvalDataError) as err:
        load_beir(tmp_path, "dev")
    assert str(err.value).startswith(str(tmp_path)) and expected in str(err.value) and "\n" not in str(err.value)


def test_a_missing_split_names_the_splits_there(tmp_path) -> None:
    data, _ = random_set(n_queries=3, n_docs=12)
    write_beir(tmp_path / "set", data, {"dev": data.qrels, "train": data.qrels})
    with pytest.raises(EvalDataError, match=r"test.tsv: not found \(splits here: dev, train\)"):
        load_beir(tmp_path / "set", "test")


def test_columns_give_queries_positives_and_distractors(tmp_path) -> None:
    rows = [
        {"query": "cats", "positive": ["a cat", "kittens"], "negative": "a dog"},
        {"query": "cats", "positive": "felines"},
        {"query": "dogs", "positive": "a dog", "negative": None},
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_retrieval_pairs(path)
    assert sorted(data.corpus.values()) == ["a cat", "a dog", "felines", "kittens"]
    text = {q: {data.corpus[d] for d in docs} for q, docs in data.qrels.items()}
    assert {data.queries[q]: t for q, t in text.items()} == {"cats": {"a cat", "kittens", "felines"}, "dogs": {"a dog"}}
    (tmp_path / "qa.csv").write_text("question,answer\nwhy,because\n")
    with pytest.raises(EvalDataError, match=r"qa.csv:1: no column 'query', 'positive' \(found 'question', 'answer'\)"):
        load_retrieval_pairs(tmp_path / "qa.csv")
    assert load_retrieval_pairs(tmp_path / "qa.csv", columns={"query": "question", "positive": "answer"}).queries == {
        "q0": "why"
    }


# ------------------------------------------------------------------ the STS-B retrieval set
def test_the_built_set_keeps_queries_out_of_the_corpus_and_test_pairs_out_of_dev(shared_data: str, tmp_path) -> None:
    module = build_script()
    assert module.main(["--data-dir", shared_data, "--output", str(tmp_path / "set"), "--distractors", "eval"]) == 0
    dev, test = load_beir(tmp_path / "set", "dev"), load_beir(tmp_path / "set", "test")
    key = module._key
    assert not {key(t) for t in dev.queries.values()} & {key(t) for t in dev.corpus.values()}
    assert len({key(t) for t in dev.corpus.values()}) == len(dev.corpus)  # one passage per text
    assert 200 < len(dev.qrels) < 400 and 200 < len(test.qrels) < 400 and 4000 < len(dev.corpus) < 6000
    from simcse.data_dir import senteval_dir
    from simcse.evaluation.tasks import load_stsb

    gold = {}
    for split in ("dev", "test"):
        pairs = load_stsb(senteval_dir(shared_data), split).subsets[0]
        gold[split] = {
            frozenset((key(a), key(b))): s for a, b, s in zip(pairs.sentences1, pairs.sentences2, pairs.scores)
        }
    for split, data in (("dev", dev), ("test", test)):  # every judgement is a pair of that split scored >= 4
        for q, docs in data.qrels.items():
            for d in docs:
                assert gold[split][frozenset((key(data.queries[q]), key(data.corpus[d])))] >= 4.0
