"""What a model is used for besides generation, each batched through the engine's step:
scoring text (log-probabilities), embeddings and hidden states, and the fine-tuned task
heads (classification); perplexity.py: a text's perplexity over sliding windows;
logprobs.py: log-probabilities from rows of logits, which generation's logprobs= and the
server report too."""
