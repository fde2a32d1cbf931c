"""MedTL: transfer learning for medical image classification, as a library the notebooks call."""
__version__ = "0.1.0"
