"""LesionDiffusion (MIT; HengruiTianSJTU/LesionDiffusion) re-implemented for the released checkpoints.

- :mod:`.config` - the repository's YAML configs -> network descriptions (widths follow the config);
- :mod:`.unet`, :mod:`.attention` - LMNet / LINet denoising UNet (spatial transformer, ``skip_context``);
- :mod:`.vq` - the VQ autoencoder of LINet's latent space;
- :mod:`.weights`, :mod:`.networks` - strict loading of the released key layout (EMA weights);
- :mod:`.schedule`, :mod:`.sampler` - the noise schedule and the DDIM mask / inpainting samplers;
- :mod:`.text`, :mod:`.biomedclip` - the attribute text condition and the BiomedCLIP text tower;
- :mod:`.backend`, :mod:`.pipeline`, :mod:`.crops`, :mod:`.masks`, :mod:`.intensity` - the
  ``lesiondiffusion`` synthesis backend (and its hybrid with the procedural mask);
- :mod:`.estimate` - time per lesion on this machine, before any work;
- :mod:`.commands` - ``pasta models forward|sample --config`` on tensors.

Synthetic images are for research use only.
"""
