"""Creative exports built on edits: augmentation sets, showcases and batches of photos."""
