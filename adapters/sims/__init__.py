"""Source adapter ``sims-xml``: SIMS CommandReporter XML exports (see README.md beside this file)."""

from adapters.sims.source import SimsXmlSource

__all__ = ["SimsXmlSource"]
