"""Everything between a file and a batch: rows, the tokenized cache, the sampler, the loader, the stream.

- :mod:`~simcse.data.readers`: rows of a text / CSV / TSV / JSONL / Parquet file or hub dataset, validated
  (errors name the file, line and problem).
- :mod:`~simcse.data.columns`: the config's source, its rows, and the token ids of a column (with its prompt).
- :mod:`~simcse.data.cache`: the Arrow cache, tokenized once per node, memory-mapped by every process.
- :mod:`~simcse.data.sampler`: :class:`~simcse.data.sampler.BatchSchedule`, the rows of every step.
- :mod:`~simcse.data.loader`: the memory-mapped views and the loader that collates them ahead of the step.
- :mod:`~simcse.data.stream`: ``streaming: true``, read, shuffled and tokenized on the fly.
- :mod:`~simcse.data.views`: the views of a step made on the fly (``views``, ``positive``: augmentations,
  next-sentence positives), seeded by (seed, step, example, view).
"""
