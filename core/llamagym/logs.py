"""Logging set-up shared by the command line and the processes a multi-process run starts."""

from __future__ import annotations

import logging
import os
import warnings


def configure_logging(verbose: bool) -> None:
    """INFO with `-v`, else WARNING, and quiet third-party libraries unless verbose."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        quiet_libraries()


def quiet_libraries() -> None:
    """Silence the progress bars and warnings of transformers and friends (a run reports its own progress)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
