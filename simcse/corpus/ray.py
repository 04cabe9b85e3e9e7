"""Encode a corpus on a Ray cluster: the encoder as a callable class for ``Dataset.map_batches``.

Ray Data reads the input in blocks, spreads them over an actor pool (one actor per GPU: each loads the
model once) and writes Parquet files with the schema of :mod:`simcse.corpus.shards` (``id`` and
``embedding``, a fixed-size list). Needs the optional extra: ``pip install "simcse-toolkit[ray]"``.

Ray Data has no row index, so the input must name an id column (convert a text file to Parquet or
JSON lines with ids first). The output files come in Ray's order, not the input's: join on ``id``.

Example (any machine of the cluster, after ``ray start --head`` and ``ray start --address=HEAD:6379``)::

    from simcse.corpus.ray import encode_with_ray
    encode_with_ray("runs/model", ["s3://bucket/corpus/"], "s3://bucket/vectors/", id_column="doc_id",
                    num_actors=16, num_gpus=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simcse.corpus.shards import to_stored


class RayEncoder:
    """Embeds one batch of rows; Ray builds one instance per actor (the model is loaded once per actor).

    Args:
        model: Model folder, hub name or ``pkg:<module>``.
        text_column: Column holding the text.
        id_column: Column holding the ids (passed through).
        pooler: Pooling mode (None: the folder's).
        batch_size: Sentences per forward pass.
        normalize: L2-normalise (None: the model's setting).
        truncate_dim: Keep the first N dimensions.
        prompt: Text put before every input.
        dtype: ``float32`` or ``binary`` (int8 needs ranges fixed for the whole corpus: use ``simcse encode``).
        device: Torch device (None: the GPU Ray gave the actor, else the CPU).
    """

    def __init__(
        self, model: str, text_column: str = "text", id_column: str = "id", pooler: str | None = None,
        batch_size: int = 64, normalize: bool | None = None, truncate_dim: int | None = None,
        prompt: str | None = None, dtype: str = "float32", device: str | None = None,
    ) -> None:  # fmt: skip
        from simcse.encoder.encoder import Encoder

        if dtype not in ("float32", "binary"):
            raise ValueError(f"dtype must be float32 or binary on Ray, got {dtype!r}")
        self.encoder = Encoder.from_pretrained(model, pooler=pooler, device=device).eval()  # type: ignore[arg-type]
        self.text_column, self.id_column, self.dtype = text_column, id_column, dtype
        self.kwargs = {"batch_size": batch_size, "normalize": normalize, "truncate_dim": truncate_dim, "prompt": prompt}

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        """``{text_column: (n,), id_column: (n,)}`` -> a pyarrow table ``id``, ``embedding`` (fixed-size list)."""
        import pyarrow as pa

        texts = [str(t) for t in batch[self.text_column]]
        for i, text in enumerate(texts):
            if not text.strip():
                raise ValueError(f"row with id {batch[self.id_column][i]!r}: empty text")
        stored = to_stored(self.encoder.encode(texts, **self.kwargs), self.dtype, None)  # (n, width)
        return pa.table({
            "id": pa.array(batch[self.id_column]),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(stored.reshape(-1)), stored.shape[1]),
        })  # fmt: skip


def _read(paths: Sequence[str], input_format: str) -> Any:
    import ray.data

    if input_format == "parquet":
        return ray.data.read_parquet(list(paths))
    if input_format == "jsonl":
        return ray.data.read_json(list(paths), lines=True)
    if input_format == "csv":
        return ray.data.read_csv(list(paths))
    raise ValueError(f"input_format must be parquet, jsonl or csv on Ray (text has no ids), got {input_format!r}")


def encode_with_ray(
    model: str, paths: Sequence[str], output: str, *, id_column: str, text_column: str = "text",
    input_format: str = "parquet", num_actors: int = 1, num_gpus: float = 0, num_cpus: float = 1,
    rows_per_call: int = 4096,
    **encoder_kwargs: Any,
) -> None:  # fmt: skip
    """Encode ``paths`` with a pool of ``num_actors`` :class:`RayEncoder` actors and write Parquet to ``output``.

    Runs on the Ray cluster ``ray.init()`` connects to (a local one when none is running).

    Args:
        model: Model folder (on storage every node sees), hub name or ``pkg:<module>``.
        paths: Input files or folders (local, or any filesystem Ray reads: ``s3://``, ``gs://``...).
        output: Output folder (shared storage, or an object store URI).
        id_column: Column holding unique ids.
        text_column: Column holding the text.
        input_format: ``parquet``, ``jsonl`` or ``csv``.
        num_actors: Size of the actor pool (one per GPU).
        num_gpus: GPUs per actor (1 on GPU clusters, 0 on CPUs).
        num_cpus: CPUs per actor (leave the cluster CPUs for Ray's read and write tasks, or the pool starves them).
        rows_per_call: Rows handed to an actor at a time (its encode sorts them by length).
        **encoder_kwargs: Passed to :class:`RayEncoder` (``pooler``, ``batch_size``, ``normalize``...).
    """
    ds = _read(paths, input_format).select_columns([id_column, text_column])
    ds = ds.map_batches(
        RayEncoder, fn_constructor_kwargs={"model": model, "text_column": text_column, "id_column": id_column,
                                           **encoder_kwargs},
        batch_size=rows_per_call, batch_format="numpy", concurrency=num_actors, num_gpus=num_gpus,
        num_cpus=num_cpus,
    )  # fmt: skip
    ds.write_parquet(output)
