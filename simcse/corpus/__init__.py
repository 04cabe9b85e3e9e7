"""Encode a corpus of any size into shards, and read them back for search.

- :mod:`simcse.corpus.source`: the input as a stream of rows (text, CSV, JSON lines, Parquet, a hub dataset).
- :mod:`simcse.corpus.run`: :func:`encode_corpus`, streamed, sharded, resumable, split over processes.
- :mod:`simcse.corpus.reader`: :class:`ShardedEmbeddings`, exact and quantized search shard by shard.
- :mod:`simcse.corpus.ray`: the encoder as a Ray Data callable class, and the same manifest (optional extra ``ray``).
"""

from simcse.corpus.reader import ShardedEmbeddings
from simcse.corpus.run import EncodeOptions, encode_corpus
from simcse.corpus.source import CorpusError, CorpusSource

__all__ = ["CorpusError", "CorpusSource", "EncodeOptions", "ShardedEmbeddings", "encode_corpus"]
