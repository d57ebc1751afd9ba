"""Rollout engines: they play episodes and yield each finished one to the run loop."""
