"""Coordinators: consumer groups (`group`) and, separately, transactions."""
