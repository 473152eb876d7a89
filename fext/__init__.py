"""FEXT: train a convolutional autoencoder on your images; search, map and rank them offline."""

import os

# Before any backend import: quiet TensorFlow's C++ logs; oneDNN (fast CPU convolutions) stays on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
