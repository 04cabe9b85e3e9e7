"""The typed training config: a frozen dataclass with help text and the paper's defaults, checked when built."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from simcse.config.checks import Mode, check_config


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a SimCSE run needs. Defaults follow Gao et al. (2021), unsupervised BERT-base.

    The file and folder fields (:data:`PATH_FIELDS`) also take ``os.PathLike`` values (``pathlib.Path``);
    they are stored as plain strings, as ``config.yaml`` records them.
    """

    # model
    model_name_or_path: str = _f("bert-base-uncased", "hub name or local folder of the encoder")
    pooler: str = _f("cls", "cls | cls_before_pooler | avg | avg_top2 | avg_first_last | mean | last_token")
    mlp_only_train: bool | None = _f(
        None, "use the MLP head in training only; None: the paper's choice, true for unsup, false (kept) otherwise"
    )
    dropout: float | None = _f(None, "override hidden and attention dropout (None keeps the model's)")
    same_dropout_mask: bool = _f(False, "ablation: both views share one dropout mask (paper Table 3, 'fixed')")
    attention_dropout: float | None = _f(None, "override the attention dropout only (llm2vec: 0.3 on Llama/Mistral)")
    hidden_dropout: float | None = _f(None, "override the hidden (residual) dropout only; error where there is none")
    # decoder backbones, LoRA, prompts (simcse/encoder/decoder.py, lora.py, prompts.py)
    attention: Literal["model", "bidirectional"] = _f(
        "model", "model: the architecture's own attention; bidirectional: a decoder without its causal mask (llm2vec)"
    )
    add_eos: bool = _f(False, "make the tokenizer append its EOS token (last_token pooling reads it; E5-mistral)")
    model_dtype: Literal["float32", "bfloat16"] = _f("float32", "backbone weight dtype (bfloat16: 7B on a GPU)")
    lora_r: int = _f(0, "LoRA rank (0: train every weight; > 0: train LoRA adapters and the head only)")
    lora_alpha: float = _f(32.0, "LoRA scale numerator: the update is (lora_alpha / lora_r) B A")
    lora_dropout: float = _f(0.05, "dropout on the LoRA adapters' input")
    lora_target_modules: tuple[str, ...] | None = _f(None, "module names to adapt (None: every linear layer)")
    load_in_4bit: bool = _f(False, "QLoRA: 4-bit NF4 backbone through bitsandbytes (CUDA only; needs lora_r > 0)")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward (same dropout masks: RNG replayed)")
    prompt: str | None = _f(None, "text put before every training sentence (all columns) and saved as the default")
    prompts: dict[str, str] | None = _f(None, "a prompt per column, e.g. {sent0: 'Instruct: ...\\nQuery: '}")
    include_prompt: bool = _f(True, "pool over the prompt's tokens too (false: sentence-transformers' include_prompt)")
    # data
    mode: Mode = _f("unsup", "unsup: one sentence per line; pairs: CSV sent0,sent1; triplets: + hard_neg")
    train_file: str | None = _f("corpus/wiki_sentences.txt", "text/CSV file, relative to data_dir if not found")
    dataset_name: str | None = _f(None, "Hugging Face dataset name (instead of train_file)")
    dataset_config: str | None = _f(None, "Hugging Face dataset config name")
    dataset_split: str = _f("train", "Hugging Face dataset split")
    columns: tuple[str, ...] = _f(
        ("sent0", "sent1", "hard_neg"), "column names: text (unsup) or sent0,sent1[,hard_neg]"
    )
    data_dir: str | None = _f(None, "data directory (else $SIMCSE_DATA_DIR, else ./data)")
    max_train_samples: int | None = _f(None, "use only the first N training examples")
    on_bad_line: Literal["error", "skip"] = _f("error", "bad training line: stop with an error, or skip and count")
    max_seq_len: int = _f(32, "truncation length for training sentences")
    data_format: Literal["auto", "text", "csv", "tsv", "jsonl", "parquet"] = _f(
        "auto", "train_file's format; auto: by extension (.csv .tsv .jsonl .json .parquet), else text (unsup) or csv"
    )
    data_cache_dir: str | None = _f(None, "where the tokenized Arrow cache is kept (None: the datasets cache)/simcse")
    streaming: bool = _f(False, "read, shuffle (with a buffer) and tokenize on the fly; needs max_steps > 0")
    shuffle_buffer: int = _f(10_000, "streaming: examples in the shuffle buffer (larger: closer to a full shuffle)")
    dataloader_workers: int | None = _f(None, "loader processes collating batches (None: 2 on GPU, 0 on CPU)")
    no_duplicates: bool = _f(False, "no two rows of a global batch share a text (in-batch false negatives)")
    # views of an unsupervised example (simcse/augment/, simcse/data/views.py)
    views: tuple[str, ...] = _f(
        ("none", "none"),
        "unsup: each view's augmentation: none | crop:R | word_deletion:R | delete_one_word | synonym[:R] | "
        "word_repetition[:R] | mlm[:R] | token_shuffle | token_cutoff[:R] (R a fraction; dropout applies as set)",
    )
    positive: Literal["same", "next", "next3"] = _f(
        "same", "unsup: the second view's sentence: the same one, the next line, or one of the next three lines"
    )
    augment_model: str | None = _f(None, "mlm views: the masked LM that fills the masks (None: model_name_or_path)")
    two_encoders: bool = _f(False, "the second view goes through its own copy of the encoder (paper Table 2)")
    datasets: list[dict[str, Any]] | None = _f(
        None,
        "several sources in one run: a YAML list of mappings, each with its own data options (train_file or "
        "dataset_name, mode, columns, prompt(s), data_format, streaming...; the top level's are the defaults) and "
        "an optional name; each step's batch comes from one source (see simcse/data/mixture.py)",
    )
    dataset_sampling: Literal["proportional", "round_robin"] = _f(
        "proportional", "datasets: each source's share of the steps: proportional to its batches, or round_robin"
    )
    # objective
    objective: str = _f("infonce", "training objective: a name in simcse.objectives.OBJECTIVES (see objective_step.py)")
    temperature: float = _f(0.05, "softmax temperature tau (of every objective that has one)")
    hard_negative_weight: float = _f(0.0, "log(alpha) added to each anchor's own hard-negative logit")
    margin: float | None = _f(None, "triplet / contrastive / circle / lifted_structure margin (None: the paper's)")
    barlow_lambda: float = _f(5e-3, "barlow_twins: weight of the off-diagonal (redundancy-reduction) term")
    momentum: float = _f(0.995, "moco / byol: EMA momentum of the target encoder (0: a copy of the online one)")
    queue_size: int = _f(256, "moco: keys of past batches (momentum encoder) kept as negatives")
    memory_size: int = _f(1024, "xbm: embeddings of past batches kept as negatives")
    memory_warmup: int = _f(1000, "xbm: steps before the memory is used (early embeddings drift fast)")
    predictor_hidden: int = _f(512, "byol / simsiam: predictor hidden width (0: no predictor, an ablation)")
    n_prototypes: int = _f(128, "swav: number of prototypes")
    matryoshka_dims: tuple[int, ...] | None = _f(
        None, "Matryoshka: also train the first N dimensions as an embedding, for each N (e.g. 384,128,64,32)"
    )
    matryoshka_weights: tuple[float, ...] | None = _f(None, "Matryoshka: each size's loss weight (None: 1 each)")
    matryoshka_distill: float = _f(
        0.0, "Matryoshka: weight of each smaller size's KL to the full size's in-batch ranking (0: off)"
    )
    matryoshka_energy: tuple[float, ...] | None = _f(
        None, "Matryoshka: per size, the weight of the share of a vector's squared length beyond it (None: off)"
    )
    guide_model: str | None = _f(
        None, "GISTEmbed: an encoder folder or name, frozen, whose similarities mask in-batch false negatives"
    )
    guide_margin: float = _f(0.0, "GISTEmbed: mask a negative the guide scores above the positive minus this")
    collapse_check_steps: int = _f(25, "record the batch's embedding_std, uniformity, collapsed every N steps (0: off)")
    do_mlm: bool = _f(False, "add the masked-language-modelling auxiliary loss")
    mlm_weight: float = _f(0.1, "weight lambda of the MLM loss")
    mlm_probability: float = _f(0.15, "fraction of tokens masked for MLM (80/10/10)")
    # optimisation
    batch_size: int = _f(64, "sentences (examples) per process per step")
    learning_rate: float = _f(3e-5, "AdamW peak learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    num_epochs: int = _f(1, "passes over the data (ignored when max_steps > 0)")
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1: num_epochs)")
    warmup_steps: int = _f(0, "linear warmup steps before linear decay")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 disables)")
    grad_cache_chunk_size: int = _f(0, "gradient cache chunk (rows per re-forward); 0 disables")
    length_group_rows: int | None = _f(
        None,
        "forward the step's rows in length-sorted groups of N, each padded to its own longest (same embeddings, "
        "fewer padded tokens; 0: one forward padded to the batch's longest; None: 32 on CPU, 0 on GPU)",
    )
    mixed_precision: Literal["no", "fp16", "bf16"] | None = _f(
        None, "autocast precision; None: the launcher's (`accelerate config`, ACCELERATE_MIXED_PRECISION), else no"
    )
    tf32: bool = _f(True, "allow TF32 matmuls on CUDA (Ampere and newer; ~1e-3 relative error, much faster fp32)")
    seed: int = _f(42, "random seed")
    # evaluation, checkpoints, logging
    eval_steps: int = _f(125, "evaluate on the dev evaluators every N steps (default: STS-B and SICK-R dev)")
    dev_evaluators: list[dict[str, Any]] | None = _f(
        None,
        "evaluator specs scored at each evaluation, as simcse eval --evaluators takes them (a YAML list; on the "
        "command line a JSON list); None: the paper's STS-B dev and SICK-R dev (stsb_dev, sickr_dev, alignment...)",
    )
    metric_for_best: str = _f(
        "stsb_dev", "the metric that picks the saved model, as metrics.jsonl names it (e.g. retrieval/ndcg@10)"
    )
    eval_on_start: bool = _f(False, "also evaluate before the first step (step 0 on the curves, and a candidate)")
    eval_batch_size: int = _f(128, "batch size for evaluation encoding")
    checkpoint_steps: int = _f(
        1000, "write a resumable checkpoint every N steps, and at the end and on SIGTERM (0: at every evaluation)"
    )
    logging_steps: int | None = _f(
        None, "record loss and lr every N steps, the step's only host sync (None: 1 on CPU, 10 on GPU)"
    )
    keep_last_n: int = _f(2, "resumable checkpoints kept")
    ddp_timeout: int = _f(
        1800, "seconds a collective of the training step may wait before the run fails (NCCL's own default: 600)"
    )
    wait_timeout: int = _f(
        10800,
        "seconds every process may wait for one process's long work: the main process tokenizing the corpus "
        "(~10k lines/s), evaluating, writing the best model or a checkpoint (see README, Scaling out)",
    )
    max_nonfinite_steps: int = _f(10, "stop after this many non-finite losses in a row")
    output_dir: str = _f("runs/simcse", "run directory (model, checkpoints, metrics, config)")
    log_with: str | None = _f(None, "Accelerate tracker, e.g. tensorboard")
    plot_curves: bool = _f(True, "draw training_curves.png at the end (false: no matplotlib, ~2 s less per run)")
    push_to_hub: str | None = _f(
        None, "after a successful run, upload the model folder to this Hugging Face repo (user/name, private)"
    )

    def __post_init__(self) -> None:
        for name in PATH_FIELDS:  # frozen: a Path given is kept as the string config.yaml saves
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        for name in ("matryoshka_dims", "matryoshka_weights"):  # a list from Python is kept as config.yaml's tuple
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.mlp_only_train is None:  # frozen: resolved once, so the saved config.yaml says what ran
            object.__setattr__(self, "mlp_only_train", self.mode == "unsup")
        check_config(self)

    @property
    def num_views(self) -> int:
        """Sentences per example: 2 (unsup: the same one twice; pairs) or 3 (triplets)."""
        return 3 if self.mode == "triplets" else 2

    def views_in(self, rows: int) -> int:
        """Views per example of a batch of ``rows`` (view-major): the mode's; with several sources, the batch's
        source's (every batch holds ``batch_size`` examples of one source)."""
        return self.num_views if not self.datasets else rows // self.batch_size

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The columns the mode reads: the first 1 (unsup), 2 (pairs) or 3 (triplets) of ``columns``."""
        needed = {"unsup": 1, "pairs": 2, "triplets": 3}[self.mode]
        if len(self.columns) < needed:
            raise ValueError(f"mode {self.mode} needs {needed} column names, got {self.columns}")
        return tuple(self.columns[:needed])

    @property
    def view_columns(self) -> list[int]:
        """The text column of each view: unsupervised data reads its one column twice."""
        return [0, 0] if self.mode == "unsup" else list(range(len(self.text_columns)))

    @property
    def augments(self) -> bool:
        """Whether the loader makes the views (an augmentation or a next-sentence positive), not the cache alone."""
        return self.positive != "same" or any(v != "none" for v in self.views)

    @property
    def column_prompts(self) -> dict[str, str]:
        """``{column: prompt}`` from ``prompt`` (every column) or ``prompts``; empty without prompts."""
        if self.prompt is not None:
            return {c: self.prompt for c in self.columns}
        return {c: p for c, p in (self.prompts or {}).items() if p}

    @property
    def masks_prompts(self) -> bool:
        """Whether batches carry a ``prompt_mask`` (some column has a prompt that pooling must leave out)."""
        return bool(self.column_prompts) and not self.include_prompt


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
PATH_FIELDS = (
    "model_name_or_path", "augment_model", "guide_model", "train_file", "dataset_name", "data_dir", "data_cache_dir",
    "output_dir",
)  # fmt: skip


def help_text() -> str:
    """One line per config key: name, default and help."""
    return "\n".join(f"  --{n} (default {f.default!r}): {f.metadata['help']}" for n, f in FIELDS.items())
