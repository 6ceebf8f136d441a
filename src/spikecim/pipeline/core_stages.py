"""Core stages: train, evaluate, trace."""
