"""Seeing what a model learned: filters, feature maps, mistakes, plots, the HTML report, TensorBoard."""
