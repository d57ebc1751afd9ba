"""The `llamagym` command line: run, eval, collect, sft, list, plugins, new, plot; one module per command, each
adding itself to the group in `llamagym.cli.group`. A command imports what is heavy (torch-backed code, tqdm) when
it runs, so that `llamagym --help`, `list` and `plugins` stay fast and never import torch."""

from __future__ import annotations

from llamagym.cli import collect, evaluate, listing, new, plot, run, sft  # noqa: F401  (each adds its command)
from llamagym.cli.group import CliError, cli

__all__ = ["cli", "main", "CliError"]


def main() -> None:
    cli.main(prog_name="llamagym")


if __name__ == "__main__":  # pragma: no cover
    main()  # click's standalone mode exits itself
