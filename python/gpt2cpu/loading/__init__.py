"""Reading a model directory: config.json and generation_config.json (config.py), the
safetensors checkpoint, one file or sharded (safetensors.py, checkpoint.py), into the C++
core; bundled.py: where the demo model shipped in the package lies.
Below the model: imports nothing of gpt2cpu's but errors, files, progress and the core.
"""
