"""Small evaluation sets built from the first STS-B dev pairs: a BEIR folder, labelled pairs."""

from __future__ import annotations

import os

from simcse.evaluation.retrieval_data import RetrievalData, write_beir


def write_small_sets(root: str | os.PathLike, data_dir: str, n: int = 150) -> dict[str, str]:
    """A BEIR folder (``beir``: every third of the first ``n`` STS-B dev pairs' first sentence as a query, the
    second sentences as passages, graded 2 above a score of 4) and ``pairs.csv`` (labelled 1 at a score >= 3)."""
    from simcse.evaluation.tasks import load_task

    pairs = load_task("STSBenchmark", data_dir, stsb_split="dev").subsets[0]
    s1, s2, scores = pairs.sentences1, pairs.sentences2, pairs.scores
    queries = {f"q{i}": s1[i] for i in range(0, n, 3)}
    corpus = {f"d{i}": t for i, t in enumerate(dict.fromkeys(s2))}
    where = {t: d for d, t in corpus.items()}
    qrels = {f"q{i}": {where[s2[i]]: 1 + int(scores[i] > 4)} for i in range(0, n, 3)}
    beir = os.path.join(root, "beir")
    write_beir(beir, RetrievalData(queries, corpus, {}), {"dev": qrels})
    csv = os.path.join(root, "pairs.csv")
    with open(csv, "w", encoding="utf-8") as f:
        f.write("sentence1,sentence2,label\n")
        f.writelines(f'"{a}","{b}",{int(s >= 3)}\n' for a, b, s in zip(s1[:101], s2[:101], scores[:101]))
    return {"beir": beir, "pairs": csv}
