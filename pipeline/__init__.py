"""Face-editing studio: align, invert, edit and animate faces with StyleGAN2."""

__version__ = "0.1.0"
