"""Workloads: real-client drivers, their generators and the checkers that judge them."""
