import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def cli(capsys):
    """Run `mrgfast ARGV...` in-process; returns (exit code, stdout, stderr)."""
    from mrgfast.cli.main import main

    def run(*argv):
        capsys.readouterr()
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:  # argparse errors / --help
            rc = e.code
        out, err = capsys.readouterr()
        return rc, out, err

    return run
