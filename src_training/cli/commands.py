"""The handler of every ``deepsim`` sub-command, by the name the parser gives it."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from src_training.cli.demo import demo
from src_training.cli.evaluate import evaluate
from src_training.cli.register import register
from src_training.cli.tools import curves, export_field, fetch, info, metrics, models
from src_training.cli.train import train_features, train_registration

HANDLERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "metrics": metrics,
    "models": models,
    "fetch": fetch,
    "demo": demo,
    "train_features": train_features,
    "train_registration": train_registration,
    "register": register,
    "evaluate": evaluate,
    "curves": curves,
    "info": info,
    "export_field": export_field,
}
