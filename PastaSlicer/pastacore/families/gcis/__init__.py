"""gCIS (Ouyang et al. 2024): a general CT segmentation model whose text prompt picks the decoder pathway."""
