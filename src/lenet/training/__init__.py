"""Training: the recipes (every number), the engine (how a step runs), the loop, runs and checkpoints,
and evaluation."""
