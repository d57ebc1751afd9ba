"""The `llamagym` command line: run, eval, collect, sft, list, plugins, new, plot. Errors print as one line, never
a traceback."""

from __future__ import annotations

import logging
import sys

import click

from llamagym import __version__
from llamagym.errors import LlamaGymError, UsageError


class CliError(click.ClickException):
    """A llamagym error shown as `Error: ...`; usage errors exit with 2, others with 1."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class LlamaGymGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise CliError(str(exc), 2) from None
        except LlamaGymError as exc:
            raise CliError(str(exc), 1) from None


@click.group(cls=LlamaGymGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                   "max_content_width": 110})
@click.version_option(__version__, prog_name="llamagym")
@click.option("-v", "--verbose", is_flag=True, help="log more (model loading, checkpoints)")
def cli(verbose: bool) -> None:
    """Fine-tune LLM agents with online reinforcement learning in Gymnasium and PettingZoo environments."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        _quiet_libraries()


def _quiet_libraries() -> None:
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def main() -> None:
    cli.main(prog_name="llamagym")


# the commands register themselves on `cli`
from llamagym.cli import collect, evaluate, listing, new, plot, run, sft  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
