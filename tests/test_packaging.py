"""The package's shape: the `_core` stub matches the extension, kernels ship only as mrgfast.kernels."""

import ast
import importlib.util
import inspect
from pathlib import Path

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


def test_kernel_links_mirror_sources():
    sources = sorted(p.name for p in (ROOT / "kernels").glob("*.py"))
    links = ROOT / "mrgfast" / "kernels"
    assert not links.is_symlink(), "mrgfast/kernels must be a folder of file links (wheels skip folder links)"
    mirrored = sorted(p.name for p in links.glob("*.py"))
    assert mirrored == sources, "run scripts/link_kernels.sh"
    for name in sources:
        link = links / name
        assert link.is_symlink() and link.resolve() == (ROOT / "kernels" / name).resolve(), name


def test_no_top_level_kernels_package_from_this_repo():
    spec = importlib.util.find_spec("kernels")
    if spec is not None:  # Hugging Face's `kernels` may be installed; ours must not be what is found
        origin = spec.origin or str(list(spec.submodule_search_locations or []))
        assert str(ROOT / "kernels") not in origin, origin
    import mrgfast.kernels

    assert hasattr(mrgfast.kernels, "grpo_loss")
