"""Source adapter: arbor (see README.md beside this file)."""
