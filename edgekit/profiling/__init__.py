"""Latency measurement and cross-format comparison (energy and memory arrive with the profiler issue)."""
