"""qsnn-lava: quantized spiking networks trained in PyTorch, deployed bit-exactly to Lava and Loihi 2."""
__version__ = "0.1.0"
