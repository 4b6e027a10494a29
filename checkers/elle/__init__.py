"""Elle-style transactional checkers: list-append and rw-register.

``list_append.check`` and ``rw_register.check`` take a history and return
Elle's result map; ``consistency_models`` holds the lattice of models and
anomalies; ``graph`` the typed dependency graph and cycle search; ``explain``
the two-step (data, then sentence) cycle explanations; ``txn`` what the two
checkers share.

Thread-safety: every module is pure; nothing is shared between calls.

Sources: Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from
Experimental Observations", VLDB 2020; Adya, "Weak Consistency" (PhD thesis,
MIT 1999).
"""
