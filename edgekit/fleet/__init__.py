"""A device fleet: its CA and identities (ca.py), how calls are authenticated (auth.py), the worker's call
gate (gate.py) and discovery over mDNS (discovery.py). Imports grpc, cryptography and zeroconf lazily."""
