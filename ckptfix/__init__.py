"""ckptfix: find and rewrite distributed checkpoint saves that hang, crash or lose checkpoints.

The package root stays import-light on purpose: the CLI starts here and must never pull in torch.
"""

__version__ = "0.1.0"
