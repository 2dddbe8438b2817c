"""Model rewrites applied before lowering (BatchNorm folding now; quantization and streaming later)."""
