"""HDF5 formats (placeholder; being implemented)."""

__all__: list[str] = []
