"""Source adapter ``arbor``: pulls a school's data from the Arbor MIS API (see README.md beside this file)."""

from adapters.arbor.source import ArborSource

__all__ = ["ArborSource"]
