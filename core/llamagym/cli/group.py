"""The `llamagym` command group, which every command module adds itself to. Errors print as one line, never a
traceback."""

from __future__ import annotations

from typing import Any

import click

from llamagym import __version__
from llamagym.errors import LlamaGymError, UsageError
from llamagym.logs import configure_logging


class CliError(click.ClickException):
    """A llamagym error shown as `Error: ...`; usage errors exit with 2, others with 1."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        # ignore: click declares exit_code a ClassVar, but it reads the exception's own (`sys.exit(e.exit_code)`)
        self.exit_code = exit_code  # type: ignore[misc]


class LlamaGymGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise CliError(str(exc), 2) from None
        except LlamaGymError as exc:
            raise CliError(str(exc), 1) from None
        except OSError as exc:  # a full disk, a folder that went away: one line (with -v, the traceback)
            if ctx.params.get("verbose"):
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            raise CliError(f"{exc.strerror or exc}{where}; free space or fix the permissions, then run again (a "
                           f"training run continues with --resume)", 1) from None


@click.group(cls=LlamaGymGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                   "max_content_width": 110})
@click.version_option(__version__, prog_name="llamagym")
@click.option("-v", "--verbose", is_flag=True, help="log more (model loading, checkpoints)")
def cli(verbose: bool) -> None:
    """Fine-tune LLM agents with online reinforcement learning in Gymnasium and PettingZoo environments."""
    configure_logging(verbose)
