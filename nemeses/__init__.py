"""Fault injectors. Each acts only through the harness's node-control interface."""
