"""The training config's checks: each value in range, the objective's fields, the LLM options (ValueError).

Run by :class:`simcse.config.TrainConfig` when it is built, so a config that exists is a valid one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_args

Mode = Literal["unsup", "pairs", "triplets"]


def _defaults(cfg: Any) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cfg)}


def check_config(cfg: Any) -> None:
    """Check a :class:`simcse.config.TrainConfig`; the message names the key and the allowed values."""
    from simcse.encoder.pooling import validate_pooler

    validate_pooler(cfg.pooler)
    _objective(cfg)
    _llm(cfg)
    _views(cfg)
    checks = [
        (cfg.mode in get_args(Mode), f"mode must be one of {get_args(Mode)}, got {cfg.mode!r}"),
        (cfg.temperature > 0, f"temperature must be > 0, got {cfg.temperature}"),
        (cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}"),
        (cfg.max_seq_len >= 2, f"max_seq_len must be >= 2, got {cfg.max_seq_len}"),
        (cfg.eval_steps >= 1, f"eval_steps must be >= 1, got {cfg.eval_steps}"),
        (cfg.dropout is None or 0 <= cfg.dropout < 1, f"dropout must be in [0, 1), got {cfg.dropout}"),
        (0 < cfg.mlm_probability < 1, f"mlm_probability must be in (0, 1), got {cfg.mlm_probability}"),
        (cfg.grad_cache_chunk_size >= 0, "grad_cache_chunk_size must be >= 0"),
        (cfg.length_group_rows is None or cfg.length_group_rows >= 0, "length_group_rows must be >= 0"),
        (cfg.train_file is not None or cfg.dataset_name is not None, "give train_file or dataset_name"),
        (cfg.keep_last_n >= 1, f"keep_last_n must be >= 1, got {cfg.keep_last_n}"),
        (cfg.checkpoint_steps >= 0, f"checkpoint_steps must be >= 0, got {cfg.checkpoint_steps}"),
        (cfg.logging_steps is None or cfg.logging_steps >= 1, "logging_steps must be >= 1"),
        (not cfg.streaming or cfg.max_steps > 0, "streaming needs max_steps > 0 (a stream has no known length)"),
        (not (cfg.streaming and cfg.no_duplicates), "no_duplicates needs the map-style data (streaming: false)"),
        (cfg.shuffle_buffer >= 1, f"shuffle_buffer must be >= 1, got {cfg.shuffle_buffer}"),
        (cfg.dataloader_workers is None or cfg.dataloader_workers >= 0, "dataloader_workers must be >= 0"),
        (cfg.max_nonfinite_steps >= 1, f"max_nonfinite_steps must be >= 1, got {cfg.max_nonfinite_steps}"),
        (cfg.ddp_timeout >= 1 and cfg.wait_timeout >= 1, "ddp_timeout and wait_timeout must be >= 1 (seconds)"),
        (isinstance(cfg.metric_for_best, str) and cfg.metric_for_best.strip() != "", "metric_for_best must be named"),
        (
            cfg.dev_evaluators is None or (len(cfg.dev_evaluators) > 0 and all(
                isinstance(s, dict) and "type" in s for s in cfg.dev_evaluators)),
            "dev_evaluators must be a non-empty list of evaluator specs, each with a type (or null: STS-B dev)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    _matryoshka(cfg)
    _guide(cfg)
    modes = {cfg.mode} if cfg.datasets is None else {s.mode for s in _sources(cfg)}
    if cfg.hard_negative_weight != 0 and "triplets" not in modes:
        raise ValueError("hard_negative_weight needs mode: triplets")
    if cfg.grad_cache_chunk_size and (cfg.do_mlm or cfg.same_dropout_mask or cfg.objective != "infonce"):
        # the cache re-forwards one view-major batch for the InfoNCE loss; MLM and the ablation add other forwards
        raise ValueError("grad_cache_chunk_size needs objective infonce, without do_mlm or same_dropout_mask")


def _sources(cfg: Any) -> list[Any]:
    """``datasets``' sources, each checked as a run of its own; the sampling rule they allow."""
    from simcse.config.sources import source_configs

    sources = source_configs(cfg)
    if not sources:
        raise ValueError("datasets must list at least one source (or be null: the top level's train_file)")
    if cfg.dataset_sampling == "proportional" and any(s.streaming for s in sources):
        raise ValueError("dataset_sampling proportional needs every source's size: a streaming source has none; "
                         "use round_robin")  # fmt: skip
    return sources


def _matryoshka(cfg: Any) -> None:
    """The Matryoshka sizes and weights; the objectives whose loss reads only the embeddings."""
    from simcse.objectives import OBJECTIVES

    dims, weights, energy = cfg.matryoshka_dims, cfg.matryoshka_weights, cfg.matryoshka_energy
    if cfg.matryoshka_distill < 0:
        raise ValueError(f"matryoshka_distill must be >= 0, got {cfg.matryoshka_distill}")
    if dims is None:
        if weights is not None:
            raise ValueError("matryoshka_weights needs matryoshka_dims")
        for key in ("matryoshka_distill", "matryoshka_energy"):
            if getattr(cfg, key):
                raise ValueError(f"{key} needs matryoshka_dims")
        return
    spec = OBJECTIVES[cfg.objective]
    checks = [
        (len(dims) > 0 and all(d >= 1 for d in dims), f"matryoshka_dims must be sizes >= 1, got {list(dims)}"),
        (len(set(dims)) == len(dims), f"matryoshka_dims must be distinct, got {list(dims)}"),
        (weights is None or len(weights) == len(dims), "matryoshka_weights needs one weight per matryoshka_dims"),
        (weights is None or all(w > 0 for w in weights), "matryoshka_weights must be > 0"),
        (energy is None or len(energy) == len(dims), "matryoshka_energy needs one weight per matryoshka_dims"),
        (energy is None or all(w >= 0 for w in energy), f"matryoshka_energy must be >= 0, got {list(energy or [])}"),
        (not any(getattr(spec, f"needs_{k}") for k in ("predictor", "prototypes", "momentum_encoder", "queue",
                                                           "memory")),
         f"matryoshka_dims needs an objective that scores the embeddings alone; {cfg.objective} also scores them "
         "against a predictor, prototypes or stored vectors of the full size"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _guide(cfg: Any) -> None:
    """Guided false-negative filtering (GISTEmbed) masks in-batch negatives of a softmax over candidates."""
    if cfg.guide_model is None:
        if cfg.guide_margin != 0.0:
            raise ValueError("guide_margin needs guide_model")
        return
    if cfg.objective != "infonce":
        raise ValueError(f"guide_model needs objective infonce (a softmax over candidates), not {cfg.objective}")
    if cfg.guide_margin < 0:
        raise ValueError(f"guide_margin must be >= 0, got {cfg.guide_margin}")


def _objective(cfg: Any) -> None:
    """Check ``cfg.objective``, its hyperparameters and the data mode it trains on, from its registry entry."""
    from simcse.objectives import OBJECTIVES

    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {cfg.objective!r}")
    checks = [
        (0.0 <= cfg.momentum <= 1.0, f"momentum must be in [0, 1], got {cfg.momentum}"),
        (cfg.queue_size >= 1 and cfg.memory_size >= 1, "queue_size and memory_size must be >= 1"),
        (cfg.memory_warmup >= 0, f"memory_warmup must be >= 0, got {cfg.memory_warmup}"),
        (cfg.margin is None or cfg.margin > 0, f"margin must be > 0, got {cfg.margin}"),
        (cfg.barlow_lambda >= 0, f"barlow_lambda must be >= 0, got {cfg.barlow_lambda}"),
        (cfg.predictor_hidden >= 0, f"predictor_hidden must be >= 0, got {cfg.predictor_hidden}"),
        (cfg.n_prototypes >= 2, f"n_prototypes must be >= 2, got {cfg.n_prototypes}"),
        (cfg.collapse_check_steps >= 0, f"collapse_check_steps must be >= 0, got {cfg.collapse_check_steps}"),
        (cfg.objective == "infonce" or cfg.batch_size >= 2, f"objective {cfg.objective} needs batch_size >= 2"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    three_views = sorted(name for name, spec in OBJECTIVES.items() if spec.views >= 3)
    if cfg.mode == "triplets" and OBJECTIVES[cfg.objective].views < 3:
        raise ValueError(
            f"objective {cfg.objective} takes two views, not a hard negative: use mode pairs (it reads sent0,sent1 "
            f"of a triplet CSV) or unsup; objectives using triplets: {', '.join(three_views)}"
        )
    readers: dict[str, list[str]] = {}
    for name, spec in OBJECTIVES.items():
        for key in spec.config_fields:
            readers.setdefault(key, []).append(name)
    for key, users in readers.items():
        if getattr(cfg, key) != _defaults(cfg)[key] and cfg.objective not in users:
            raise ValueError(f"{key} is read by objective(s) {', '.join(users)} only, not {cfg.objective}")


def _llm(cfg: Any) -> None:
    """Check the decoder / LoRA / prompt fields."""
    rates = (cfg.attention_dropout, cfg.hidden_dropout)
    checks = [
        (all(r is None or 0 <= r < 1 for r in rates), "attention_dropout and hidden_dropout must be in [0, 1)"),
        (cfg.lora_r >= 0, f"lora_r must be >= 0, got {cfg.lora_r}"),
        (cfg.lora_alpha > 0, f"lora_alpha must be > 0, got {cfg.lora_alpha}"),
        (0 <= cfg.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {cfg.lora_dropout}"),
        (not cfg.load_in_4bit or cfg.lora_r > 0, "load_in_4bit needs lora_r > 0 (4-bit weights cannot be trained)"),
        (not (cfg.lora_r and cfg.do_mlm), "do_mlm needs lora_r 0 (the MLM head is not adapted)"),
        (cfg.prompt is None or cfg.prompts is None, "give prompt (every column) or prompts (per column), not both"),
        (cfg.include_prompt or cfg.prompt or cfg.prompts, "include_prompt false needs a prompt or prompts"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    unknown = sorted(set(cfg.prompts or {}) - set(cfg.columns))
    if unknown:
        raise ValueError(f"prompts name column(s) {unknown} not among columns {list(cfg.columns)}")


def _views(cfg: Any) -> None:
    """Check the views of an unsupervised example against the mode, the objective and the other options."""
    from simcse.augment import parse_view
    from simcse.objectives import OBJECTIVES

    specs = [parse_view(v) for v in cfg.views]  # an unknown kind or a bad rate: its own message
    spec = OBJECTIVES[cfg.objective]
    token_level = sorted({str(s) for s in specs if s.level == "token"})
    changed = cfg.augments or cfg.two_encoders
    checks = [
        (len(specs) == 2, f"views must name 2 views (one per side), got {len(specs)}: {list(cfg.views)}"),
        (not cfg.augments or cfg.mode == "unsup", f"views and positive make unsupervised views; mode is {cfg.mode} "
         "(pairs and triplets read both sides from the data)"),
        (not cfg.augments or not cfg.streaming, "views and positive need the map-style data (streaming: false)"),
        (not cfg.augments or not spec.needs_labels, f"objective {cfg.objective} needs labelled pairs, not two views "
         "of an example: views and positive cannot feed it"),
        (not (cfg.augments and cfg.same_dropout_mask), "same_dropout_mask forwards one view for both: with views "
         "or positive the two sides differ"),
        (not (changed and cfg.grad_cache_chunk_size), "grad_cache_chunk_size re-forwards one shared encoder over "
         "cached views: not with views, positive or two_encoders"),
        (not (cfg.two_encoders and spec.needs_momentum_encoder), f"two_encoders: objective {cfg.objective}'s second "
         "side is its momentum encoder already"),
        (not (cfg.two_encoders and cfg.same_dropout_mask), "two_encoders and same_dropout_mask exclude each other"),
        (not (token_level and (cfg.prompt or cfg.prompts)), f"token-level views {token_level} would move a prompt's "
         "tokens: use word-level views with prompts"),
        (cfg.augment_model is None or any(s.kind == "mlm" for s in specs), "augment_model is read by mlm views only"),
        (not (changed and cfg.datasets is not None), "views, positive and two_encoders are one run's settings, not "
         "a source's: not with datasets (several sources)"),
        (not (changed and cfg.guide_model), "guide_model scores the batch's own texts: not with views, positive or "
         "two_encoders"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
