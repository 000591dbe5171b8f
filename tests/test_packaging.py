"""The package's shape: the `_core` stub matches the extension, the wheel ships the whole package, kernels only
as mrgfast.kernels."""

import ast
import importlib.util
import inspect
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import mrgfast
from mrgfast import _core

ROOT = Path(__file__).resolve().parents[1]


def _stub():
    tree = ast.parse((ROOT / "mrgfast" / "_core.pyi").read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    names = {t.target.id for t in tree.body if isinstance(t, ast.AnnAssign)}
    return funcs, names


def test_stub_matches_extension():
    funcs, names = _stub()
    exported = {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}
    runtime_funcs = {n for n in exported if callable(getattr(_core, n))}
    assert runtime_funcs == set(funcs), "functions in _core vs _core.pyi"
    assert exported - runtime_funcs == names, "constants in _core vs _core.pyi"
    for name, node in funcs.items():
        params = [a.arg for a in node.args.args]
        runtime = list(inspect.signature(getattr(_core, name)).parameters)
        assert params == runtime, f"{name}: stub {params} vs extension {runtime}"
        assert ast.get_docstring(node), f"{name} has no docstring in the stub"
        defaults = [ast.literal_eval(d) for d in node.args.defaults]
        rt = [
            p.default for p in inspect.signature(getattr(_core, name)).parameters.values() if p.default is not p.empty
        ]
        assert len(defaults) == len(rt), f"{name}: stub defaults {defaults} vs extension {rt}"
        for stub_default, runtime_default in zip(defaults, rt):
            # PyO3 shows a default taken from a Rust constant as `...`; those are checked by value below
            if runtime_default is not Ellipsis:
                assert stub_default == runtime_default, f"{name}: stub defaults {defaults} vs extension {rt}"


def test_stub_constants_match():
    assert _core.BLANK == mrgfast.BLANK == -128
    assert _core.DEFAULT_MARGIN == 0.5 and _core.DEFAULT_UNCERTAIN == 1.0
    funcs, _ = _stub()
    for name in ("mccs_pairs", "mccs_group", "mccs_from_labels"):
        args = funcs[name].args
        named = dict(zip([a.arg for a in args.args][-len(args.defaults) :], map(ast.literal_eval, args.defaults)))
        assert named["margin"] == _core.DEFAULT_MARGIN and named["uncertain"] == _core.DEFAULT_UNCERTAIN, name


def test_kernels_live_inside_the_package():
    """The ops are real files of mrgfast/kernels/ (no links, nothing to mirror); the root's kernels/ holds none."""
    pkg = ROOT / "mrgfast" / "kernels"
    assert not pkg.is_symlink() and (pkg / "__init__.py").is_file()
    for path in pkg.rglob("*"):
        assert not path.is_symlink(), f"{path} is a link"
    assert not list((ROOT / "kernels").rglob("*.py")), "kernel sources belong in mrgfast/kernels/"
    for folder in ("kernels", "tests", "bench"):
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/ must not be a regular package"


def _resolve_kernels(path: list[Path]) -> str:
    """Where ``import kernels`` resolves with ``path`` first on sys.path, in a clean interpreter: the module's
    file, ``namespace:<folders>`` for a namespace package, or ``absent``."""
    code = (
        "import importlib.util, sys\n"
        f"sys.path[:0] = {[str(p) for p in path]!r}\n"
        "spec = importlib.util.find_spec('kernels')\n"
        "if spec is None: print('absent')\n"
        "elif spec.origin in (None, 'namespace'): print('namespace:' + '|'.join(spec.submodule_search_locations))\n"
        "else: print(spec.origin)\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def _root_kernels_shadows(root: Path, site: Path) -> bool:
    """Can ``root``'s own top-level ``kernels/`` shadow the ``kernels`` package installed in ``site``? With the root
    first on sys.path (an editable install's .pth, ``python -m pytest`` from the root), the import must still find
    the installed one. (Where ``site`` lies does not matter: a ``.venv/`` inside the root is fine.)"""
    found = _resolve_kernels([root, site])
    own = (root / "kernels").resolve()
    if found.startswith("namespace:"):
        return any(Path(p).resolve() == own for p in found.removeprefix("namespace:").split("|"))
    return found != "absent" and own in Path(found).resolve().parents


def _fake_installed_kernels(site: Path) -> Path:
    (site / "kernels").mkdir(parents=True)
    (site / "kernels" / "__init__.py").write_text("INSTALLED = True\n")
    return site


def test_repository_kernels_folder_cannot_shadow_an_installed_kernels(tmp_path):
    """This repository's kernels/ (a catalogue, no __init__.py) never hides Hugging Face's ``kernels``, wherever that
    is installed: in a site folder of its own, or in a .venv/ inside the repository root (what scripts/setup.sh
    makes, and transformers >= 5.25 installs ``kernels`` there)."""
    assert not _root_kernels_shadows(ROOT, _fake_installed_kernels(tmp_path / "site"))
    assert not _root_kernels_shadows(ROOT, _fake_installed_kernels(tmp_path / "repo" / ".venv" / "site"))
    # the same layout as this checkout: a catalogue folder at the root and kernels installed in root/.venv/
    root = tmp_path / "repo"
    (root / "kernels").mkdir()
    (root / "kernels" / "README.md").write_text("catalogue\n")
    assert not _root_kernels_shadows(root, root / ".venv" / "site")


def test_a_regular_kernels_package_at_the_root_is_caught(tmp_path):
    """The check above can fail: an ``__init__.py`` in the root's kernels/ makes it a regular package that wins
    over the installed one (inside or outside the root)."""
    root = tmp_path / "repo"
    (root / "kernels").mkdir(parents=True)
    (root / "kernels" / "__init__.py").write_text("")
    assert _root_kernels_shadows(root, _fake_installed_kernels(tmp_path / "site"))
    assert _root_kernels_shadows(root, _fake_installed_kernels(root / ".venv" / "site"))


def test_this_environment_imports_kernels_from_outside_the_repository_folder():
    """In this very environment (repository root on sys.path), ``kernels`` is Hugging Face's when installed, a
    namespace portion (which transformers treats as absent) otherwise, and mrgfast's ops stay mrgfast.kernels."""
    spec = importlib.util.find_spec("kernels")
    own = (ROOT / "kernels").resolve()
    if spec is not None and spec.origin not in (None, "namespace"):
        assert own not in Path(spec.origin).resolve().parents, spec.origin
    from transformers.utils.import_utils import is_kernels_available

    if spec is None or spec.origin in (None, "namespace"):
        assert not is_kernels_available()
    import mrgfast.kernels

    assert hasattr(mrgfast.kernels, "grpo_loss")


def test_wheel_ships_every_package_file(tmp_path):
    """Build the wheel (cargo reuses the editable install's release build) and compare it with the tree:
    every .py under mrgfast/ (the kernels included), the data files, the extension; no top-level strays."""
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent))
    if maturin is None:
        pytest.skip("maturin is not installed in this environment")
    proc = subprocess.run(
        [maturin, "build", "--release", "--quiet", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("mrgfast-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        p.relative_to(ROOT).as_posix()
        for pattern in ("*.py", "*.pyi", "*.yaml", "*.jsonl", "*.txt", "py.typed")
        for p in (ROOT / "mrgfast").rglob(pattern)
        if "__pycache__" not in p.parts
    }
    assert wanted, "no package files found"
    assert not wanted - names, f"missing from the wheel: {sorted(wanted - names)}"
    assert any(n.startswith("mrgfast/_core") and n.endswith(".so") for n in names), "no extension in the wheel"
    top = {n.split("/", 1)[0] for n in names}
    assert top <= {"mrgfast", f"mrgfast-{mrgfast.__version__}.dist-info"}, top
