"""Command-line entry point: parses options and hands work to the engine; never imports torch."""

import click

from ckptfix import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ckptfix")
def main() -> None:
    """Find and rewrite PyTorch checkpoint saves that hang or corrupt distributed training."""
