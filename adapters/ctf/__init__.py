"""Source adapter ``ctf``: DfE Common Transfer Files (see README.md beside this file)."""

from adapters.ctf.source import CtfSource

__all__ = ["CtfSource"]
