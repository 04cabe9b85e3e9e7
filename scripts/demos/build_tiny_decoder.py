"""Build a tiny random Llama (2 layers) with a word-level tokenizer over a corpus, for the CPU demo recipe.

    python scripts/demos/build_tiny_decoder.py runs/tiny-llama --corpus data/corpus/wiki_sentences.txt

Nothing is downloaded. The tokenizer prepends <s> and appends </s> (so last_token pooling reads EOS).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import re


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--corpus", required=True, help="text file, one sentence per line")
    parser.add_argument("--words", type=int, default=8000)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()

    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    counts: collections.Counter[str] = collections.Counter()
    with open(args.corpus, encoding="utf-8") as f:
        for line in itertools.islice(f, 20000):
            counts.update(re.findall(r"\w+|[^\w\s]", line.lower()))
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys([*specials, *(w for w, _ in counts.most_common(args.words))]))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        model_max_length=128,
    )  # fmt: skip
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=args.hidden, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=2 * args.hidden, max_position_embeddings=128,
        bos_token_id=2, eos_token_id=3, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(args.folder)
    tok.save_pretrained(args.folder)
    print(f"tiny Llama ({args.hidden} hidden, {len(vocab)} words) in {args.folder}")


if __name__ == "__main__":
    main()
