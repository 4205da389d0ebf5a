"""Latent codes at run time: latent files, inversion, edit directions (load, save, apply), edits, mixing,
expression transfer, regions and edits to a target (uses ``faces`` and ``models``)."""
