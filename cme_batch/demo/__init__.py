"""The demo school: a seeded, fictional primary school to run the whole pipeline on.

``generate(seed, pupils)`` returns a ``DemoSchool``: model records ready for the store, a
newer export that corrects a mark, a configuration, and the cases the engine must open.
``cme-batch demo --dir D`` (``cme_batch.cli_demo``) loads it and runs what exists of the pipeline.
"""

from cme_batch.demo.generator import DemoSchool, generate
from cme_batch.demo.plants import ExpectedCase, LaReturn, NoCase

__all__ = ["DemoSchool", "ExpectedCase", "LaReturn", "NoCase", "generate"]
