"""tenet's trainer kernel. It holds no Temporal code: GPU-queue activities run it as a child process
(`python -m tenet_trainer <command> ...`) and read one JSON object per line of its stdout."""

__all__ = ["__version__"]
__version__ = "0.1.0"
