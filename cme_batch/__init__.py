"""cme-batch: nightly watch for Children Missing Education (CME) at an English school."""

__version__ = "0.1.0"
