"""The arm64 device environment under emulation: bundles, a worker (make test-arm64)."""
