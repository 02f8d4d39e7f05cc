"""dfcourse: helpers for the deepfake-detection course notebooks."""
__version__ = "0.1.0"
