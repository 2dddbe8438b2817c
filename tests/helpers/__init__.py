"""Helpers the tests share (imported by test modules and conftest.py; test modules never import each other)."""
