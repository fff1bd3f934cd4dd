"""Training small PASTA-topology segmentation models on CPU (the built-in default model)."""
