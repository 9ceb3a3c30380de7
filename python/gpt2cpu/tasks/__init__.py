"""What a model is used for besides generation, each batched through the engine's step:
scoring text (log-probabilities), embeddings and hidden states, and the fine-tuned task
heads (classification)."""
