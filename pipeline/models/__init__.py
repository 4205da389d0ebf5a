"""Models and their weights: the registry (``models.toml``), the Hub, checkpoints, the generator, encoder,
perceptual and face networks, and :func:`render` (latent -> image). Imports nothing above it."""
