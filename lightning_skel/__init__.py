"""lightning_skel: skeleton-based action recognition under adversarial attack, on PyTorch Lightning."""

__version__ = "0.1.0"
