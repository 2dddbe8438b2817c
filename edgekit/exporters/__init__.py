"""Exporters, one module per format, behind the table in :mod:`edgekit.formats`."""
