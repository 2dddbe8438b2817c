"""The arm64 device environment under emulation (environment.py) and what it is built from."""
