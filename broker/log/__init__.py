"""Segmented, indexed partition logs on disk."""
