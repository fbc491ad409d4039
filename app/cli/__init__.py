"""`lgm-pose` console script (also `python -m app.cli`): one parser, each subcommand registered by the module that
owns it (model/cli/ for the library, app/cli/serve.py for the service, bench/cli.py for the benchmarks)."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module exposing add_parser(subparsers); imported lazily so `info` stays light.
COMMANDS: dict[str, str] = {
    "info": "model.cli.info",
    "export": "model.cli.info",
    "train": "model.cli.train",
    "eval": "model.cli.eval",
    "teacher": "model.cli.teacher",
    "clean": "model.cli.clean",
    "pseudo-label": "model.cli.pseudo_label",
    "holdout": "model.cli.holdout",
    "mpii-convert": "model.cli.mpii_convert",
    "compare": "model.cli.compare",
    "diagnose": "model.cli.diagnose",
    "fit-fusion": "model.cli.fit_fusion",
    "check-precision": "model.cli.check_precision",
    "serve": "app.cli.serve",
    "bench": "bench.cli",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lgm-pose", description="LGM-Pose: network, training, evaluation, service")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for module_name in dict.fromkeys(COMMANDS.values()):
        if wanted and COMMANDS[wanted] != module_name:
            for name, mod in COMMANDS.items():  # keep every name listed in --help without importing it
                if mod == module_name:
                    sub.add_parser(name)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # subcommand not built yet
            if wanted:  # the command asked for needs what this install lacks (the runtime has no torch)
                raise SystemExit(f"lgm-pose {wanted} needs {exc.name}, part of the full install "
                                 "(pip install 'lgm-pose[full]')") from None
            for name, mod in COMMANDS.items():
                if mod == module_name:
                    sub.add_parser(name, help=f"(needs {exc.name}: the full install, lgm-pose[full])")
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return int(args.func(args) or 0)

