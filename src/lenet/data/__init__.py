"""Data sets: the registry, IDX files and where they come from, your own folders and CSV files,
image decoding, and batches on the device."""
