"""FEXT: train a convolutional autoencoder on your images; search, map and rank them offline."""

__version__ = "0.1.0"
