"""DAIK core: a pure PyTorch library for oriented detection and its distillation.

It never imports the service, the worker, web, database or queue packages (checked by import-linter).
"""

__version__ = "0.1.0"
