"""Tiny random causal LMs with their own byte-level BPE tokenizer — for tests and the smoke config only."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

# A fixed corpus keeps the tokenizer identical across machines; byte-level BPE can still encode any text.
_CORPUS = """
The quick brown fox jumps over the lazy dog. People say all kinds of things online, some kind and some cruel.
I can't believe what he said to her. They are always complaining about everything, and it makes me angry.
The recipe calls for two cups of flour and a pinch of salt. Honestly, the weather today is lovely.
You are such an idiot, shut up and go away. What a stupid thing to do. Those people never listen to anyone.
She walked into the room and started yelling at everyone. The meeting was moved to Thursday afternoon.
Religion, politics, age, gender and money are topics that start arguments at family dinners.
Question one. A. yes B. no C. maybe D. never Answer: A Answer: B Answer: C Answer: D
""".strip().split("\n")

SPECIALS = ["<pad>", "<bos>", "<eos>"]


def build_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B",
                                                       special_tokens=[("<bos>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   padding_side="left")


def build_model(arch: str, vocab_size: int, hidden_size: int, layers: int, heads: int, seed: int,
                tokenizer: PreTrainedTokenizerFast):
    from transformers import Gemma3TextConfig, LlamaConfig

    common = dict(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                  max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if arch == "llama":
        config = LlamaConfig(tie_word_embeddings=True, **common)
    elif arch == "gemma3":
        config = Gemma3TextConfig(head_dim=hidden_size // heads, sliding_window=64, **common)
    else:
        raise ValueError(f"unknown tiny architecture: {arch}")
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)
