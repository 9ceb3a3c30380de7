"""The tokenizer: GPT-2's byte-level BPE read from a model directory's files.

tokenizer.py: `Tokenizer` (encode, decode); formats.py: tokenizer.json, vocab.json +
merges.txt and tokenizer_config.json read into a spec; vocabulary.py, byte_level.py: tokens
as bytes; bpe.py: the merge loop (native or Python); streaming.py: ids to text as they come.
Below the model: imports nothing of gpt2cpu's but errors and files.
"""
