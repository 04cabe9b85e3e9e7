#!/usr/bin/env bash
# Download SimCSE's evaluation and training data into DEST (default: ./data):
#   DEST/senteval/   STS12-16, STS-B, SICK in SentEval's layout (STS/, SICK/)
#   DEST/corpus/     wiki1m_for_simcse.txt  (unsupervised SimCSE, 1M Wikipedia sentences)
#   DEST/nli/        nli_for_simcse.csv     (supervised SimCSE, sent0,sent1,hard_neg)
# Usage: bash scripts/download_data.sh DEST   then   simcse eval --data-dir DEST ...
set -euo pipefail

DEST="${1:-data}"
BASE="https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main"

fetch() {  # fetch URL FILE: download to FILE.part, then rename, so an interrupted run leaves no partial FILE
    curl --fail --location --retry 3 --output "$2.part" "$1"
    mv "$2.part" "$2"
}

mkdir -p "$DEST/corpus" "$DEST/nli"

# senteval.tar unpacks to downstream/{STS,SICK}: that folder becomes DEST/senteval
fetch "$BASE/senteval.tar" "$DEST/senteval.tar"
rm -rf "$DEST/senteval" "$DEST/.senteval-unpack"
mkdir -p "$DEST/.senteval-unpack"
tar -xf "$DEST/senteval.tar" -C "$DEST/.senteval-unpack"
mv "$DEST/.senteval-unpack/downstream" "$DEST/senteval"
rm -rf "$DEST/.senteval-unpack" "$DEST/senteval.tar"

fetch "$BASE/wiki1m_for_simcse.txt" "$DEST/corpus/wiki1m_for_simcse.txt"
fetch "$BASE/nli_for_simcse.csv" "$DEST/nli/nli_for_simcse.csv"

echo "data ready in $DEST: senteval/ corpus/ nli/"
