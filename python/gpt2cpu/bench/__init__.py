"""`gpt2cpu bench`: measure.py takes the measurements; random_model.py writes random-weight
models of the published GPT-2 shapes to measure them on."""
