"""Source adapter: ctf (see README.md beside this file)."""
