"""Text generation over any runtime: tokenizers, code-defined tasks, greedy and sampled decoding.

Nothing here imports torch except ``torch_runner`` and ``train`` (the reference model and its training).
"""
