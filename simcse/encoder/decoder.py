"""Decoder backbones (Llama, Mistral, Qwen, Gemma, GPT-2...) as sentence encoders, through ``AutoModel``.

Three settings, each read from the model's config or tokenizer, never guessed from its name:

- dropout: which config fields hold the attention and the hidden (residual) dropout;
- attention: ``bidirectional`` sets the config's ``is_causal`` to False, which transformers' mask
  builders turn into a bidirectional mask (llm2vec's first step, without patching model classes); a
  probe forward checks that the architecture honours it, else an error names the architecture;
- EOS: ``last_token`` pooling reads the EOS state, so the tokenizer must append EOS; :func:`ensure_eos`
  checks it and adds it when asked.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# config fields holding dropout rates, by kind (BERT, RoBERTa; Llama-family and DistilBERT; GPT-2; Falcon...)
ATTENTION_DROPOUT = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
HIDDEN_DROPOUT = ("hidden_dropout_prob", "dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop")


def dropout_overrides(
    hf_config: Any,
    source: str,
    *,
    dropout: float | None = None,
    attention_dropout: float | None = None,
    hidden_dropout: float | None = None,
) -> dict[str, float]:
    """Config keyword arguments that set the model's dropout rates.

    ``dropout`` sets every rate the config has; ``attention_dropout`` / ``hidden_dropout`` set one kind
    and win over ``dropout``. A kind the architecture lacks (Llama has no hidden dropout) is an error.
    """
    model_type = getattr(hf_config, "model_type", "this model")
    out: dict[str, float] = {}
    if dropout is not None:
        out = {a: dropout for a in (*ATTENTION_DROPOUT, *HIDDEN_DROPOUT) if hasattr(hf_config, a)}
        if not out:
            raise ValueError(f"{source}: {model_type} config has none of {ATTENTION_DROPOUT + HIDDEN_DROPOUT}")
    kinds = ((attention_dropout, ATTENTION_DROPOUT, "attention"), (hidden_dropout, HIDDEN_DROPOUT, "hidden"))
    for rate, attrs, kind in kinds:
        if rate is None:
            continue
        found = [a for a in attrs if hasattr(hf_config, a)]
        if not found:
            raise ValueError(f"{source}: {model_type} has no {kind} dropout setting (none of {attrs} in its config)")
        out.update({a: rate for a in found})
    return out


def check_bidirectional(model: nn.Module, source: str) -> None:
    """Raise ``ValueError`` unless the first token's state depends on a later token (config ``is_causal`` honoured)."""
    config = model.config  # type: ignore[union-attr]
    vocab = int(getattr(config, "vocab_size", 8))
    ids = torch.arange(4, device=_device(model)).remainder(vocab).unsqueeze(0)  # (1, 4)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % vocab
    was_training = model.training
    model.eval()
    with torch.no_grad():
        mask = torch.ones_like(ids)
        first = [model(input_ids=x, attention_mask=mask).last_hidden_state[0, 0].float() for x in (ids, changed)]
    model.train(was_training)
    if torch.allclose(first[0], first[1], atol=0, rtol=0):
        model_type = getattr(config, "model_type", type(model).__name__)
        raise ValueError(
            f"{source}: {model_type} ({type(model).__name__}) keeps causal attention with is_causal=False in its "
            "config; bidirectional attention is not available for this architecture (use attention: model)"
        )


def appends_eos(tokenizer: Any) -> bool:
    """Whether the tokenizer ends every encoded text with its EOS token."""
    eos = tokenizer.eos_token_id
    return eos is not None and all(tokenizer(t)["input_ids"][-1:] == [eos] for t in ("a", "a b c"))


def ensure_eos(tokenizer: Any, add: bool, source: str) -> None:
    """Make sure ``tokenizer`` appends its EOS token, which ``last_token`` pooling reads.

    Args:
        tokenizer: A fast tokenizer.
        add: Append EOS if the tokenizer does not (the model's recipe says so: E5-mistral, llm2vec).
        source: The model's name, for messages.

    Raises:
        ValueError: no EOS token, or it is not appended and ``add`` is False.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{source}: the tokenizer has no EOS token; last_token pooling needs one (or use mean)")
    if appends_eos(tokenizer):
        return
    if not add:
        raise ValueError(
            f"{source}: the tokenizer does not append its EOS token {tokenizer.eos_token!r}, so last_token pooling "
            "would read the last word, not EOS; set add_eos: true to append it (as E5-mistral and llm2vec do)"
        )
    # transformers' own switch: rebuilds the post-processor; keep the BOS the tokenizer adds now, if any
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    tokenizer.add_bos_token = adds_bos
    tokenizer.add_eos_token = True
    if not appends_eos(tokenizer):
        raise ValueError(f"{source}: could not make the tokenizer ({type(tokenizer).__name__}) append EOS")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
