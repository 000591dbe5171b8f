import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    """A tiny random Qwen2.5-VL (0.1M parameters) and a 12-study synthetic test split (56-px images)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from mrgfast.data.synth import generate
    from mrgfast.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("eval_assets")
    annotation = generate(root / "data", n_train=2, n_val=0, n_test=12, image_size=56, views=2, seed=0)
    model = build_tiny(
        root / "model",
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        vision_hidden=32,
        vision_depth=1,
        image_size=56,
        seed=0,
    )
    return {"model": str(model), "annotation": str(annotation)}


@pytest.fixture
def cli(capsys):
    """Run `mrgfast ARGV...` in-process; returns (exit code, stdout, stderr)."""
    from mrgfast.cli.main import main

    def run(*argv):
        capsys.readouterr()
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
        out, err = capsys.readouterr()
        return rc, out, err

    return run
