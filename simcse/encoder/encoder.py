"""Encoder: a Hugging Face model + pooling + optional head; encode, similarity, search, save/load."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from simcse.encoder.batches import check_encode_arguments, encode_into
from simcse.encoder.heads import DenseHead
from simcse.encoder.mteb import cosine_pairwise, is_mteb_inputs, mteb_prompt, texts_from_batches
from simcse.encoder.padding import pad_ragged, ragged
from simcse.encoder.pooling import Pooler, needs_hidden_states, pool, validate_pooler
from simcse.encoder.prompts import PROMPT_MASK, PromptSettings, read_prompt_settings, tokenize_with_prompt
from simcse.io import StrPath
from simcse.quantize import check_truncate_dim, truncate_embeddings


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Encoder(nn.Module):
    """A sentence encoder: ``AutoModel`` -> :func:`simcse.encoder.pooling.pool` -> optional head.

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
        prompts: PromptSettings | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.pooler: Pooler = validate_pooler(pooler)
        self.head = head
        self.max_seq_length = max_seq_length
        self.normalize = normalize
        self.prompts = prompts or PromptSettings()  # see simcse.encoder.prompts
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
        name_or_path: StrPath,
        pooler: Pooler | None = None,
        *,
        max_seq_length: int | None = None,
        device: str | torch.device | None = None,
        backend: Literal["torch", "onnx", "openvino"] = "torch",
        onnx_file: StrPath = "onnx/model.onnx",
        backend_settings: dict[str, Any] | None = None,
        **model_kwargs: Any,
    ) -> Encoder:
        """Load a folder saved by this project, a sentence-transformers model, or any HF encoder.

        Args:
            name_or_path: Local folder (``str`` or ``os.PathLike``), hub name, or ``pkg:<module>`` for a
                model shipped in a Python package (see :func:`simcse.encoder.hub.resolve_model_name`).
            pooler: Pooling mode; defaults to the folder's own choice, else ``cls`` (which uses the
                checkpoint's pooler layer as head when it has one, as SimCSE's evaluation does).
            max_seq_length: Truncation length for ``encode``; defaults to the folder's setting.
            device: Where the model runs (``"cuda"``, ``"cuda:1"``, ``"cpu"``...); None picks the first
                GPU when there is one, else the CPU (as sentence-transformers does). ONNX runs on the CPU.
            backend: ``torch``; ``onnx`` / ``openvino``: the backbone runs with ONNX Runtime / OpenVINO from
                ``onnx_file`` (``simcse export`` writes it; OpenVINO compiles it once and caches the result
                in the folder); pooling and head stay the same.
            onnx_file: The graph, relative to the folder (e.g. ``onnx/model_qint8_static.onnx``).
            backend_settings: ``{"threads": N}``; for ``openvino`` also compile properties.
            **model_kwargs: Passed to ``AutoModel.from_pretrained``.
        """
        from simcse.encoder.folder import load_parts
        from simcse.encoder.onnx import find_graph

        name_or_path = os.fspath(name_or_path)
        onnx_path = find_graph(backend, name_or_path, onnx_file)  # a missing graph fails before any weights are read
        model, tokenizer, pooler, head, max_len, normalize = load_parts(
            name_or_path, pooler, max_seq_length=max_seq_length, **model_kwargs
        )
        if onnx_path is not None:  # the torch weights were read for the config and head only
            from simcse.encoder.runtimes import runtime_backbone

            model = runtime_backbone(backend, onnx_path, os.fspath(onnx_file), model.config, backend_settings)
            device = "cpu"
        encoder = cls(model, tokenizer, pooler, head, max_len, normalize, read_prompt_settings(name_or_path))
        return encoder.to(default_device() if device is None else device)

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

        ``use_head=False`` skips the head (SimCSE's ``mlp_only_train`` at evaluation time). A
        ``prompt_mask`` entry (1 on prompt tokens) removes those tokens from the pooling only.
        """
        prompt_mask = batch.pop(PROMPT_MASK, None)
        out = self.model(**batch, output_hidden_states=needs_hidden_states(self.pooler), return_dict=True)
        return self.pool_outputs(out, batch["attention_mask"], prompt_mask, use_head)

    def pool_outputs(
        self, out: Any, attention_mask: torch.Tensor, prompt_mask: torch.Tensor | None = None, use_head: bool = True
    ) -> torch.Tensor:
        """The backbone's outputs -> ``(batch, dim)``: pooling (prompt tokens left out), then the head."""
        mask = attention_mask if prompt_mask is None else attention_mask * (1 - prompt_mask)
        pooled = pool(self.pooler, mask, out.last_hidden_state, out.hidden_states)
        if use_head and self.head is not None and self.pooler != "cls_before_pooler":
            pooled = self.head(pooled)  # (batch, dim)
        return pooled

    def tokenize(
        self, sentences: Sequence[str], max_length: int | None = None, prompt: str | None = None
    ) -> dict[str, list[list[int]]]:
        """Tokenize ``prompt + sentence`` without padding (truncated at ``max_length``, default
        ``max_seq_length``); with a prompt and ``include_prompt`` off, a ``prompt_mask`` feature too."""
        length = max_length or self.max_seq_length
        return tokenize_with_prompt(self.tokenizer, sentences, prompt, length, self.prompts.include_prompt)

    def collate(self, features: dict[str, list[list[int]]], rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad the given rows of pre-tokenized ``features`` to their longest length (right padding)."""
        parts = {key: [ragged([seqs[i] for i in rows])] for key, seqs in features.items()}
        return pad_ragged(parts, self.tokenizer.pad_token_id or 0)

    @torch.inference_mode()
    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 64,
        normalize: bool | None = None,
        show_progress_bar: bool = False,
        use_head: bool = True,
        precision: Literal["fp32", "bf16"] = "fp32",
        truncate_dim: int | None = None,
        prompt: str | None = None,
        prompt_name: str | None = None,
        progress: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed sentences into one float32 array, one row per input, in input order.

        Batches are sorted by token length and padded to their longest member, so the result does not
        depend on ``batch_size`` or order. Extra keyword arguments (as MTEB passes) are ignored.

        Args:
            sentences: A string (gives a 1-D vector) or a sequence of strings; or MTEB 2's
                ``DataLoader`` of text batches, with its keywords ``task_metadata`` and ``prompt_type``
                choosing the prompt (see :mod:`simcse.encoder.mteb`).
            batch_size: Sentences per forward pass.
            normalize: L2-normalise rows; defaults to the model's setting.
            show_progress_bar: Show a tqdm bar.
            use_head: Apply the head (if any) after pooling.
            precision: ``bf16`` runs the model under bfloat16 autocast: faster where the hardware has
                bf16 kernels (recent GPUs; CPUs with AVX512-BF16 or AMX), slightly different vectors
                (see ``scripts/bench/bench_encode.py``). The result is float32 either way.
            truncate_dim: Keep the first N dimensions (Matryoshka-style), re-normalised if ``normalize``
                (see :func:`simcse.quantize.truncate_embeddings`).
            prompt: Text put before every sentence (an instruction); its tokens are pooled unless
                the model's ``include_prompt`` is off.
            prompt_name: A key of the model's saved prompts (e.g. ``query``, ``document``); without
                ``prompt`` or ``prompt_name`` the model's ``default_prompt_name`` applies, if any.
            progress: Called with the number of sentences of each batch once it is encoded.

        Example:
            >>> vecs = encoder.encode(["a cat", "a dog"], normalize=True)  # doctest: +SKIP
            >>> q = encoder.encode(["how do cats sleep?"], prompt_name="query")  # doctest: +SKIP
        """
        if is_mteb_inputs(sentences):  # MTEB 2: a DataLoader of {"text": [...]} batches, and its task's prompt
            if prompt is None and prompt_name is None:
                prompt = mteb_prompt(self, kwargs.get("task_metadata"), kwargs.get("prompt_type"))
            sentences = texts_from_batches(sentences)
        single = isinstance(sentences, str)
        items = [sentences] if single else list(sentences)
        check_encode_arguments(items, batch_size, precision)
        check_truncate_dim(truncate_dim, self.dim)
        normalize = self.normalize if normalize is None else normalize
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if items:
            features = self.tokenize(items, prompt=self.prompts.resolve(prompt, prompt_name))
            was_training = self.training
            self.eval()
            encode_into(self, out, features, batch_size, use_head, precision, normalize, show_progress_bar, progress)
            self.train(was_training)
        if truncate_dim is not None:
            out = truncate_embeddings(out, truncate_dim, normalize=normalize)  # (n, truncate_dim)
        return out[0] if single else out

    def similarity(self, a: Sequence[str] | np.ndarray, b: Sequence[str] | np.ndarray) -> np.ndarray:
        """Cosine similarity matrix ``(len(a), len(b))`` of sentences or precomputed embeddings."""
        ea = np.asarray(a) if hasattr(a, "shape") else self.encode(a)  # arrays or tensors (MTEB passes both)
        eb = np.asarray(b) if hasattr(b, "shape") else self.encode(b)
        ta = F.normalize(torch.as_tensor(np.atleast_2d(ea), dtype=torch.float32), dim=-1)
        tb = F.normalize(torch.as_tensor(np.atleast_2d(eb), dtype=torch.float32), dim=-1)
        return (ta @ tb.T).numpy()  # (len(a), len(b))

    def similarity_pairwise(self, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
        """Cosine similarity of each row of ``a`` with the same row of ``b``: ``(n,)`` (MTEB 2 scores pairs so)."""
        return cosine_pairwise(a, b)

    @property
    def mteb_model_meta(self) -> Any:
        """MTEB 2's ``ModelMeta`` for this model (needs ``mteb``; see :func:`simcse.encoder.mteb.mteb_model_meta`)."""
        from simcse.encoder.mteb import mteb_model_meta

        return mteb_model_meta(self)

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
    def save(self, path: StrPath, *, include_head: bool = True, extra_files: dict[str, str] | None = None) -> None:
        """Write a folder readable by this class, ``AutoModel`` and ``SentenceTransformer``.

        The folder is built beside ``path`` and renamed into place, so an interrupted save never
        leaves a half-written model. ``include_head=False`` drops the head (SimCSE's
        ``mlp_only_train``) and records ``cls_before_pooler`` for a ``cls`` model.
        """
        from simcse.encoder.folder import save_folder

        save_folder(self, path, include_head=include_head, extra_files=extra_files)
