"""Bridges from PyTorch / ONNX Runtime / diffusers to the HDF5 files that ``epg_core`` consumes."""
