"""Training loops for the models this project ships (generator, encoder, ...)."""
