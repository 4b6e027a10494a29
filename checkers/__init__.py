"""Pure checkers: a history in, a results map out. Nothing else of the repository is imported here."""
