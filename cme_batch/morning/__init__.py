"""The morning emails: the office summary, the DSL digest and confirmation requests."""
