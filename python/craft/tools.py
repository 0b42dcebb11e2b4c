"""craft's command-line tools, installed by pip as console scripts.

    craft ...         the command line of a cluster (craft/__main__.py): status, membership,
                      snapshots and metrics of live nodes, and `craft dump` below.
    craft-dump [--entries] DIR
                      what a node's data directory holds: the hard state, every WAL segment with
                      its entry range and terms, every snapshot, with every CRC checked; with
                      --entries every entry (`craft dump --decode msgpack` decodes them). Reads
                      only and takes no lock. Exit status 0 (all checks), 1 (corrupt), 2 (usage
                      or I/O error). docs/storage.md describes the formats.

Each tool is a C program of c/tools, built with the package (setup.py) and shipped in it under
craft/bin/; the console script starts it in place of the Python process, so its output, exit
status and signals are the program's own.
"""

import os
import sys
from typing import List, Optional

BIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


def tool_path(name: str) -> str:
    """The path of the program `name` shipped in this installation of craft."""
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is missing or not executable: craft's {name} is built "
                                f"with the package; reinstall craft (pip install craft)")
    return path


def _run(name: str, argv: Optional[List[str]]) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        exe = tool_path(name)
    except FileNotFoundError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, [exe, *args])


def dump_main(argv: Optional[List[str]] = None) -> int:
    """The craft-dump console script."""
    return _run("craft-dump", argv)


if __name__ == "__main__":
    sys.exit(dump_main())
