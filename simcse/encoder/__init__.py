"""Sentence encoders: ``AutoModel`` + pooling + optional head, and the folders they load from and save to.

- :mod:`~simcse.encoder.encoder`: :class:`Encoder` (encode, similarity, search).
- :mod:`~simcse.encoder.pooling`: the paper's pooling modes; :mod:`~simcse.encoder.heads`: the MLP / Dense head.
- :mod:`~simcse.encoder.folder`: our folder format (load and save); :mod:`~simcse.encoder.st_format`:
  sentence-transformers' ``modules.json`` layout.
- :mod:`~simcse.encoder.hub` and :mod:`~simcse.encoder.checks`: finding a model's files and checking them.
"""

from simcse.encoder.encoder import Encoder
from simcse.encoder.heads import DenseHead
from simcse.encoder.hub import resolve_model_name
from simcse.encoder.pooling import POOLERS, Pooler, pool, validate_pooler

__all__ = ["POOLERS", "DenseHead", "Encoder", "Pooler", "pool", "resolve_model_name", "validate_pooler"]
