"""A training run: the one loop, its set-up, the recorder, checkpoints and the run directory."""
