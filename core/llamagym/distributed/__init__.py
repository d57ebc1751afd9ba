"""Several processes: the launcher, the process group and the global batch."""
