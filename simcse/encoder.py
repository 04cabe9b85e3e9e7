"""Encoder: a Hugging Face model + pooling + optional head; encode, similarity, search, save/load."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simcse.heads import DenseHead, head_from_hf_pooler
from simcse.hub import resolve_file, resolve_model_name
from simcse.io import atomic_dir
from simcse.model_folder import check_loading_info, check_model_path, check_transformer_folder
from simcse.pooling import Pooler, needs_hidden_states, pool, validate_pooler
from simcse.st_format import read_st_layout, write_st_layout

logger = logging.getLogger(__name__)

SIMCSE_CONFIG = "simcse_config.json"
HEAD_WEIGHTS = "simcse_head.safetensors"


class Encoder(nn.Module):
    """A sentence encoder: ``AutoModel`` -> :func:`simcse.pooling.pool` -> optional head.

    The head (SimCSE's MLP, a sentence-transformers Dense layer, or BERT's own pooler for a plain
    checkpoint loaded with ``pooler="cls"``) is applied after pooling for every mode except
    ``cls_before_pooler``.

    Example:
        >>> enc = Encoder.from_pretrained("princeton-nlp/sup-simcse-bert-base-uncased")  # doctest: +SKIP
        >>> enc.encode(["A man is playing a guitar.", "A woman reads."]).shape  # doctest: +SKIP
        (2, 768)
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        pooler: Pooler = "cls",
        head: DenseHead | None = None,
        max_seq_length: int = 512,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooler: Pooler = validate_pooler(pooler)
        self.head = head
        self.max_seq_length = max_seq_length
        self.normalize = normalize
        # The model's own pooler is unused (its weights live in `head` when wanted); keeping it out of
        # the module tree avoids "unused parameters" under DistributedDataParallel. It is put back
        # only to write a checkpoint that AutoModel reads with the head in `pooler_output`.
        self._hf_pooler: list[nn.Module] = []
        if isinstance(getattr(model, "pooler", None), nn.Module):
            self._hf_pooler.append(model.pooler)
            model.pooler = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        pooler: Pooler | None = None,
        *,
        max_seq_length: int | None = None,
        **model_kwargs: Any,
    ) -> Encoder:
        """Load a folder saved by this project, a sentence-transformers model, or any HF encoder.

        Args:
            name_or_path: Local folder, hub name, or ``pkg:<module>`` for a model shipped in a Python
                package (see :func:`simcse.hub.resolve_model_name`).
            pooler: Pooling mode; defaults to the folder's own choice, else ``cls`` (which uses the
                checkpoint's pooler layer as head when it has one, as SimCSE's evaluation does).
            max_seq_length: Truncation length for ``encode``; defaults to the folder's setting.
            **model_kwargs: Passed to ``AutoModel.from_pretrained``.
        """
        from transformers import AutoModel, AutoTokenizer

        name_or_path = resolve_model_name(name_or_path)
        check_model_path(name_or_path)
        head: DenseHead | None = None
        normalize, subfolder, folder_max_len, chosen = False, "", None, None
        own_cfg = resolve_file(name_or_path, SIMCSE_CONFIG)
        st_modules = None if own_cfg else resolve_file(name_or_path, "modules.json")
        if own_cfg is not None:
            cfg = _read_own_config(own_cfg)
            chosen, folder_max_len, normalize = cfg["pooler"], cfg.get("max_seq_length"), cfg.get("normalize", False)
            if cfg.get("head"):
                head = _load_head(name_or_path, cfg["head"])
        elif st_modules is not None:
            layout = read_st_layout(name_or_path, st_modules)
            chosen, head, normalize = layout.pooler, layout.head, layout.normalize
            subfolder, folder_max_len = layout.transformer_subfolder, layout.max_seq_length
        kwargs = {"subfolder": subfolder} if subfolder else {}
        if os.path.isdir(name_or_path):
            check_transformer_folder(os.path.join(name_or_path, subfolder) if subfolder else name_or_path)
        try:
            model, info = AutoModel.from_pretrained(name_or_path, **kwargs, **model_kwargs, output_loading_info=True)
        except Exception as err:  # e.g. a truncated weights file: the library's message omits the folder
            if not os.path.isdir(name_or_path) or name_or_path in str(err):
                raise
            raise OSError(f"{name_or_path}: cannot load the model ({type(err).__name__}: {err})") from err
        check_loading_info(name_or_path, model, info)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        pooler = validate_pooler(pooler or chosen or "cls")
        if head is None and own_cfg is None and st_modules is None and pooler == "cls":
            hf_pooler = getattr(model, "pooler", None)
            head = head_from_hf_pooler(hf_pooler) if hf_pooler is not None else None
        max_len = max_seq_length or folder_max_len or min(getattr(tokenizer, "model_max_length", 512), 512)
        return cls(model, tokenizer, pooler, head, max_len, normalize)

    # ------------------------------------------------------------------ forward
    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        """Size of the sentence vectors."""
        if self.head is not None and self.pooler != "cls_before_pooler":
            return self.head.dense.out_features
        return int(self.model.config.hidden_size)

    def forward(self, use_head: bool = True, **batch: torch.Tensor) -> torch.Tensor:
        """Embed a tokenized batch: ``(batch, seq)`` tensors -> ``(batch, dim)``.

        ``use_head=False`` skips the head (SimCSE's ``mlp_only_train`` at evaluation time).
        """
        out = self.model(**batch, output_hidden_states=needs_hidden_states(self.pooler), return_dict=True)
        pooled = pool(self.pooler, batch["attention_mask"], out.last_hidden_state, out.hidden_states)
        if use_head and self.head is not None and self.pooler != "cls_before_pooler":
            pooled = self.head(pooled)  # (batch, dim)
        return pooled

    def tokenize(self, sentences: Sequence[str], max_length: int | None = None) -> dict[str, list[list[int]]]:
        """Tokenize without padding (truncated at ``max_length``, default ``max_seq_length``)."""
        enc = self.tokenizer(
            list(sentences), truncation=True, max_length=max_length or self.max_seq_length, padding=False
        )
        return {k: enc[k] for k in self.tokenizer.model_input_names if k in enc}

    def collate(self, features: dict[str, list[list[int]]], rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the given rows of pre-tokenized ``features`` to their longest length (right padding)."""
        ids = features["input_ids"]
        width = max(len(ids[i]) for i in rows)
        pad_id = self.tokenizer.pad_token_id or 0
        batch = {}
        for key, seqs in features.items():
            fill = pad_id if key == "input_ids" else 0
            arr = np.full((len(rows), width), fill, dtype=np.int64)
            for r, i in enumerate(rows):
                arr[r, : len(seqs[i])] = seqs[i]
            batch[key] = torch.from_numpy(arr)
        if "attention_mask" not in batch:
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                mask[r, : len(ids[i])] = 1
            batch["attention_mask"] = torch.from_numpy(mask)
        return batch

    @torch.inference_mode()
    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 64,
        normalize: bool | None = None,
        show_progress_bar: bool = False,
        use_head: bool = True,
        precision: Literal["fp32", "bf16"] = "fp32",
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed sentences into one float32 array, one row per input, in input order.

        Batches are sorted by token length and padded to their longest member, so the result does not
        depend on ``batch_size`` or order. Extra keyword arguments (as MTEB passes) are ignored.

        Args:
            sentences: A string (gives a 1-D vector) or a sequence of strings.
            batch_size: Sentences per forward pass.
            normalize: L2-normalise rows; defaults to the model's setting.
            show_progress_bar: Show a tqdm bar.
            use_head: Apply the head (if any) after pooling.
            precision: ``bf16`` runs the model under bfloat16 autocast: faster where the hardware has
                bf16 kernels (recent GPUs; CPUs with AVX512-BF16 or AMX), slightly different vectors
                (see ``scripts/bench_encode.py``). The result is float32 either way.

        Example:
            >>> vecs = encoder.encode(["a cat", "a dog"], normalize=True)  # doctest: +SKIP
        """
        single = isinstance(sentences, str)
        items = [sentences] if single else list(sentences)
        for i, s in enumerate(items):
            if not isinstance(s, str):
                raise TypeError(f"encode: item {i} is {type(s).__name__}, expected str")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        normalize = self.normalize if normalize is None else normalize
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if items:
            features = self.tokenize(items)
            # longest first: a too-large batch fails at once, not at the end
            order = np.argsort([-len(x) for x in features["input_ids"]], kind="stable")
            was_training = self.training
            self.eval()
            device = self.device
            starts = range(0, len(items), batch_size)
            if show_progress_bar:
                from tqdm.auto import tqdm

                starts = tqdm(starts, desc="encode", unit="batch")
            bf16 = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else None
            for start in starts:
                rows = order[start : start + batch_size]
                batch = {k: v.to(device) for k, v in self.collate(features, rows).items()}
                with bf16 or contextlib.nullcontext():
                    emb = self(use_head=use_head, **batch).float()  # (rows, dim)
                if normalize:
                    emb = F.normalize(emb, dim=-1)
                out[rows] = emb.cpu().numpy()
            self.train(was_training)
        return out[0] if single else out

    def similarity(self, a: Sequence[str] | np.ndarray, b: Sequence[str] | np.ndarray) -> np.ndarray:
        """Cosine similarity matrix ``(len(a), len(b))`` of sentences or precomputed embeddings."""
        ea = a if isinstance(a, np.ndarray) else self.encode(a)
        eb = b if isinstance(b, np.ndarray) else self.encode(b)
        ta = F.normalize(torch.as_tensor(np.atleast_2d(ea), dtype=torch.float32), dim=-1)
        tb = F.normalize(torch.as_tensor(np.atleast_2d(eb), dtype=torch.float32), dim=-1)
        return (ta @ tb.T).numpy()  # (len(a), len(b))

    def search(
        self,
        queries: str | Sequence[str],
        corpus: Sequence[str] | np.ndarray,
        top_k: int = 10,
        batch_size: int = 64,
    ) -> list[list[tuple[int, float]]]:
        """Top-k corpus entries by cosine similarity for each query: lists of ``(index, score)``.

        ``corpus`` may be sentences or their precomputed embeddings. Uses FAISS (exact inner
        product) when installed, else an exact chunked matrix product.
        """
        from simcse.search import top_k_cosine

        q = self.encode([queries] if isinstance(queries, str) else queries, batch_size=batch_size)
        c = corpus if isinstance(corpus, np.ndarray) else self.encode(corpus, batch_size=batch_size)
        return top_k_cosine(q, c, top_k)

    # ------------------------------------------------------------------ saving
    def save(self, path: str, *, include_head: bool = True, extra_files: dict[str, str] | None = None) -> None:
        """Write a folder readable by this class, ``AutoModel`` and ``SentenceTransformer``.

        The folder is built beside ``path`` and renamed into place, so an interrupted save never
        leaves a half-written model. ``include_head=False`` drops the head (SimCSE's
        ``mlp_only_train``) and records ``cls_before_pooler`` for a ``cls`` model.
        """
        head = self.head if include_head and self.pooler != "cls_before_pooler" else None
        pooler = self.pooler
        if head is None and pooler == "cls":
            pooler = "cls_before_pooler"
        with atomic_dir(path) as tmp:
            hf_pooler = self._hf_pooler[0] if self._hf_pooler else None
            if hf_pooler is not None:
                if head is not None and head.is_simcse_mlp:
                    # SimCSE's convention: the MLP lives in BERT's pooler, so AutoModel's pooler_output is it
                    hf_pooler.dense.load_state_dict(head.dense.state_dict())
                self.model.pooler = hf_pooler  # saved so the checkpoint loads without missing keys
            try:
                self.model.save_pretrained(tmp)
            finally:
                if hf_pooler is not None:
                    self.model.pooler = None
            self.tokenizer.save_pretrained(tmp)
            head_cfg = None
            if head is not None:
                from safetensors.torch import save_file

                head_cfg = {
                    "in_features": head.dense.in_features,
                    "out_features": head.dense.out_features,
                    "activation": head.activation_name,
                }
                state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
                save_file(state, os.path.join(tmp, HEAD_WEIGHTS))
            cfg = {
                "pooler": pooler,
                "head": head_cfg,
                "max_seq_length": self.max_seq_length,
                "normalize": self.normalize,
                "format_version": 1,
            }
            with open(os.path.join(tmp, SIMCSE_CONFIG), "w", encoding="utf-8") as f:
                json.dump(cfg, f, indent=2)
            hidden = int(self.model.config.hidden_size)
            if not write_st_layout(tmp, pooler, hidden, head, self.max_seq_length, self.normalize):
                logger.warning("pooler %s has no sentence-transformers equivalent; no modules.json written", pooler)
            for name, text in (extra_files or {}).items():
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                    f.write(text)


def _read_own_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read ({err})") from None
    if not isinstance(cfg, dict) or "pooler" not in cfg:
        raise ValueError(f"{path}: expected a JSON object with a 'pooler' entry")
    return cfg


def _load_head(name_or_path: str, cfg: dict[str, Any]) -> DenseHead:
    from safetensors.torch import load_file

    weights = resolve_file(name_or_path, HEAD_WEIGHTS)
    if weights is None:
        raise FileNotFoundError(f"{name_or_path}: {SIMCSE_CONFIG} names a head but {HEAD_WEIGHTS} is missing")
    try:
        head = DenseHead(cfg["in_features"], cfg["out_features"], cfg["activation"])
        head.load_state_dict(load_file(weights))
    except Exception as err:  # a damaged file, a shape or key that does not match the config
        raise ValueError(f"{weights}: cannot load the head described in {SIMCSE_CONFIG} ({err})") from err
    return head
