"""Node control: how the harness acts on the nodes of a cluster, and the programs that run on a node.

- `nodecontrol.control`: `NodeControl`, the interface every backend (`harness.backends`) implements:
  start, stop, kill, pause and resume a node, cut and heal links (grudges), run a command on a
  node, break its disk and skew its clock. Nemeses act on nodes through it and nothing else.
- `nodecontrol.launch`: the launcher a node's broker runs under when disk or clock faults are on
  (it mounts the FUSE disk and follows the clock file); it runs on the node.
- `nodecontrol.faultfs`: the FUSE file system under a node's log.dirs and its control socket; it runs
  on the node.

Boundaries: imports nothing else of the repository, since it runs on nodes (import-linter contract in
pyproject.toml).
"""
