"""Whole-broker deterministic simulation: real broker nodes assembled over broker.io's simulated runtime."""
