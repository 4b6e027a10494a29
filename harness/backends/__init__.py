"""Cluster backends: each implements harness.control.NodeControl."""
