"""PASTA's network, weight-file formats (a registry) and loading checkpoints and nnU-Net result folders."""
