"""The PyMIC model family: MIS-FM's VolF-pretrained FMUNet and PCT-Net (PyMIC checkpoints and
``[network]`` configs), VolF pretraining on a user's own CTs, and fine-tuning from either.
Importing this package needs no torch."""
