"""Source adapter: sims (see README.md beside this file)."""
