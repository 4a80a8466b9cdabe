"""Experiments: scenario files, and the runner that turns them into results."""
