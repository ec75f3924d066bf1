"""LeNet: one definition, its registry of option sets, and the test-time views around it."""
