"""The ``tfdeploy`` command line (also ``python -m tfdeploy``).

Each command is one module exposing ``add_parser(subparsers)``, which adds its sub-parser and
sets ``func`` (``args -> exit status``) with ``set_defaults``. Adding a command is that module
plus one line in :data:`COMMANDS` (or, for a command living in another package, in
:data:`EXTERNAL_COMMANDS`). :func:`main` applies one error policy to all of them: an error is
one line on stderr and exit status 2, never a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback

from ..errors import TFDeployError, UnsupportedOpError
from ._common import COMMON, UsageError, _Parser
from .example import example_model

__all__ = ["main", "example_model", "COMMANDS", "EXTERNAL_COMMANDS"]

#: the built-in commands, in the order ``tfdeploy --help`` lists them (modules of this package)
COMMANDS = ("example", "convert", "info", "graph", "run", "bench", "check", "plan",
            "profile")
#: commands other packages provide, registered when the package is present
#: (``tfdeploy serve``: src/tfdeploy/serve/cli.py)
EXTERNAL_COMMANDS = ("tfdeploy.serve.cli",)

DESCRIPTION = """\
tfdeploy: TensorFlow models converted once to a small data-only file, evaluated with numpy alone.
Only 'convert' and 'example' need TensorFlow."""

EPILOG = """\
examples:
  tfdeploy convert saved_model_dir model.tfd     # or a .keras/.h5 file, or a frozen .pb
  tfdeploy info model.tfd                        # what is in it
  tfdeploy run model.tfd --input x.npy           # run it
  tfdeploy bench model.tfd --batch 1,8,32        # time it
  tfdeploy graph model.tfd -o model.html         # see it
  tfdeploy check model.tfd                       # trust it: compare with TensorFlow's outputs
  tfdeploy plan model.tfd --batch 8              # how it runs: the compiled plan

'tfdeploy COMMAND --help' describes each command."""


def _command_modules() -> list:
    mods = [importlib.import_module(f"{__name__}.{name}") for name in COMMANDS]
    for name in EXTERNAL_COMMANDS:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            # only a package that is absent is skipped; a broken one must show
            if e.name is None or not name.startswith(e.name):
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    from tfdeploy._version import __version__

    # --debug and --plugin go before the command name or after it
    p = _Parser(prog="tfdeploy", description=DESCRIPTION, epilog=EPILOG, parents=[COMMON],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"tfdeploy {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in _command_modules():
        mod.add_parser(sub)
    return p


def _load_plugins(names: list[str]) -> None:
    """Import each plugin (a module name or a .py file): it registers custom ops."""
    for name in names:
        try:
            if name.endswith(".py") or os.sep in name:
                if not os.path.isfile(name):
                    raise UsageError(f"plugin file {name!r} does not exist")
                spec = importlib.util.spec_from_file_location(
                    os.path.splitext(os.path.basename(name))[0], name)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except TFDeployError:
            raise
        except Exception as e:
            raise UsageError(f"cannot import plugin {name!r}: {type(e).__name__}: {e}") from e


def one_line(e: BaseException) -> str:
    """An exception as one line: what a user needs, without the traceback."""
    msg = str(e)
    if isinstance(e, UnsupportedOpError):
        msg = msg.split("\nAdd a kernel")[0] + "\nregister a kernel for each in a Python " \
            "module and pass it with --plugin MODULE (README, 'Custom ops')"
    if isinstance(e, OSError) and e.filename is not None:
        msg = f"{e.strerror or e}: {e.filename!r}"
    joined = ""
    for line in (x.strip() for x in msg.splitlines()):
        if line:
            joined += line if not joined else f" {line}" if joined.endswith(":") else f"; {line}"
    msg = joined or type(e).__name__
    if isinstance(e, (TFDeployError, OSError)):
        return f"error: {msg}"
    return f"internal error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # known even when the arguments themselves are wrong
    command = next((a for a in argv if a in COMMANDS), None)  # if even the parser fails
    try:
        parser = build_parser()
        names = {n for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                 for n in a.choices}
        command = next((a for a in argv if a in names), None)  # for the error prefix
        args = parser.parse_args(argv)
        command = args.command
        # (COMMON's actions are shared by every parser: no set_defaults for them)
        _load_plugins(getattr(args, "plugin", None) or [])
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("tfdeploy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tfdeploy info model.tfd | head`: the reader left, not an error
        # (what Python's docs advise: stdout to /dev/null, so the flush at exit is silent)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - the policy: one line, exit status 2
        if debug:
            traceback.print_exc()
        prefix = f"tfdeploy {command}" if command else "tfdeploy"
        print(f"{prefix}: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
