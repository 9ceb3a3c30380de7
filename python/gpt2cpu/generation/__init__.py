"""Generation over the model's batched step: loop.py (one prompt, or a sequence continued:
GenerationConfig, GenerationResult, the context rule), batch.py (many prompts and n samples
in batched steps), decoding.py (one sample's rules, token by token), sampling.py,
stopping.py, and options.py (the keyword options of Model.generate and Model.stream).
"""
