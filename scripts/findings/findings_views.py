"""The paper's Tables 1 and 2 in the findings grid: views beyond dropout, and the training objectives.

Table 1 (Gao et al., 2021): the positive is a discrete augmentation of the sentence instead of a second
dropout copy (dropout stays on unless the row says so). Table 2: next-sentence positives, delete one word
and unsup SimCSE, each with one shared encoder or two separate ones. Every run is the default unsup
recipe of ``reproduce_findings.py`` plus the change below, so it shares that grid's start, budget,
selection and test protocol (and its cached ``unsup`` run).
"""

from __future__ import annotations

from typing import Any

from findings_tables import CLEAR_MARGIN, Table, _dev, _get

# run id -> changes to the default unsup recipe, in the order the grid runs them (the findings first)
VIEW_RUNS: dict[str, dict[str, Any]] = {
    "delete_one_word": {"views": "none,delete_one_word"},
    "crop_0.1": {"views": "none,crop:0.1"},
    "word_deletion_0.1": {"views": "none,word_deletion:0.1"},
    "synonym": {"views": "none,synonym"},
    "mlm_0.15": {"views": "none,mlm:0.15"},
    "next_sentence": {"positive": "next"},
    "next_3_sentences": {"positive": "next3"},
    "unsup_two_encoders": {"two_encoders": True},
    "delete_one_word_two_encoders": {"views": "none,delete_one_word", "two_encoders": True},
    "next_sentence_two_encoders": {"positive": "next", "two_encoders": True},
    "next_3_sentences_two_encoders": {"positive": "next3", "two_encoders": True},
    "delete_one_word_no_dropout": {"views": "none,delete_one_word", "dropout": 0.0},
    "crop_0.2": {"views": "none,crop:0.2"},
    "crop_0.3": {"views": "none,crop:0.3"},
    "word_deletion_0.2": {"views": "none,word_deletion:0.2"},
    "word_deletion_0.3": {"views": "none,word_deletion:0.3"},
}

VIEW_TABLES = (
    Table(
        "augmentations",
        "Views beyond dropout: discrete augmentations as the positive",
        "Table 1",
        (
            ("crop 10%", "crop_0.1"),
            ("crop 20%", "crop_0.2"),
            ("crop 30%", "crop_0.3"),
            ("word deletion 10%", "word_deletion_0.1"),
            ("word deletion 20%", "word_deletion_0.2"),
            ("word deletion 30%", "word_deletion_0.3"),
            ("delete one word", "delete_one_word"),
            ("delete one word, w/o dropout", "delete_one_word_no_dropout"),
            ("synonym replacement (WordNet, one word)", "synonym"),
            ("MLM 15% (bert-mini-mlm-wiki's top predictions)", "mlm_0.15"),
            ("dropout alone (unsup SimCSE)", "unsup"),
        ),
        paper_dev=(77.8, 71.4, 63.6, 75.9, 72.2, 68.2, 75.9, 74.2, 77.4, 62.2, 82.5),
    ),
    Table(
        "objectives_t2",
        "Training objectives: next sentence, delete one word, SimCSE; one or two encoders",
        "Table 2",
        (
            ("next sentence, one encoder", "next_sentence"),
            ("next sentence, two encoders", "next_sentence_two_encoders"),
            ("next 3 sentences, one encoder", "next_3_sentences"),
            ("next 3 sentences, two encoders", "next_3_sentences_two_encoders"),
            ("delete one word, one encoder", "delete_one_word"),
            ("delete one word, two encoders", "delete_one_word_two_encoders"),
            ("unsup SimCSE, one encoder", "unsup"),
            ("unsup SimCSE, two encoders", "unsup_two_encoders"),
        ),
        paper_dev=(67.1, 68.9, 67.4, 68.8, 75.9, 73.1, 82.5, 80.7),
    ),
)


def verdict_augmentations(results: dict[str, dict[str, Any]]) -> str:
    """Table 1's finding: dropout alone beats every discrete augmentation (by a clear margin, on dev and average)."""
    ref = _get(results, "unsup")
    rows = {label: r for label, rid in VIEW_TABLES[0].rows if rid != "unsup" and (r := _get(results, rid))}
    if ref is None or not rows:
        return "not enough runs finished to judge."
    best_dev = max(rows, key=lambda k: _dev(rows[k]))
    best_avg = max(rows, key=lambda k: rows[k]["avg"])
    gap_dev, gap_avg = _dev(ref) - _dev(rows[best_dev]), ref["avg"] - rows[best_avg]["avg"]
    clear = gap_dev >= CLEAR_MARGIN and gap_avg >= CLEAR_MARGIN
    word = "**Reproduces**" if clear else ("**Partly**" if gap_dev > 0 or gap_avg > 0 else "**Does not reproduce**")
    return (
        f"{word} (dropout alone above every augmentation by at least {CLEAR_MARGIN:g} points on STS-B dev and on the "
        f"average; {len(rows)} of 10 rows run): dropout alone {_dev(ref):.2f} dev, {ref['avg']:.2f} avg; best "
        f"augmentation by dev *{best_dev}* {_dev(rows[best_dev]):.2f} (dropout alone minus it: {gap_dev:+.2f}), by "
        f"average *{best_avg}* {rows[best_avg]['avg']:.2f} ({gap_avg:+.2f}). Paper: dropout alone 82.5, every "
        "augmentation 62.2-77.8, crop and word deletion worse as the rate grows."
    )


def verdict_objectives_t2(results: dict[str, dict[str, Any]]) -> str:
    """Table 2's finding: unsup SimCSE beats the other objectives; two encoders do not help SimCSE."""
    pairs = [(one, two) for (one, _), (two, _) in zip(VIEW_TABLES[1].rows[::2], VIEW_TABLES[1].rows[1::2])]
    rows = {label: r for label, rid in VIEW_TABLES[1].rows if (r := _get(results, rid))}
    simcse = rows.get("unsup SimCSE, one encoder")
    if simcse is None or len(rows) < 2:
        return "not enough runs finished to judge."
    best = max(rows, key=lambda k: _dev(rows[k]))
    word = "**Reproduces**" if best == "unsup SimCSE, one encoder" else "**Does not reproduce**"
    gaps = [
        f"{one.split(',')[0]}: {_dev(rows[two]) - _dev(rows[one]):+.2f}"
        for one, two in pairs
        if one in rows and two in rows
    ]
    return (
        f"{word} (unsup SimCSE with one encoder the best row by STS-B dev): best is *{best}* ({_dev(rows[best]):.2f}). "
        f"Two encoders minus one, STS-B dev: {'; '.join(gaps) or 'no pair finished'}. Paper: SimCSE 82.5 first; two "
        "encoders lose 1.8 (SimCSE) and 2.8 (delete one word) but gain 1.4-1.8 for next-sentence positives."
    )


VIEW_VERDICTS = {"augmentations": verdict_augmentations, "objectives_t2": verdict_objectives_t2}
