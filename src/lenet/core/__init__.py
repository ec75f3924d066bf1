"""Below everything: errors, atomic file writes, progress lines, the device choice, the version."""
