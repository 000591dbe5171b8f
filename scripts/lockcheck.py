"""Check the lock file against its inputs and against an installed environment.

    python scripts/lockcheck.py                      # does requirements/lock.txt satisfy pyproject's ranges?
    python scripts/lockcheck.py --freeze --exact     # ... and is this interpreter's environment exactly the lock?
    python scripts/lockcheck.py --extras             # print the installed packages the lock does not name

Two questions, asked by ``tests/test_lock.py`` and by ``scripts/setup.sh`` after it installs:

* **Is the lock still a resolution of the inputs?** Every requirement of pyproject.toml (its dependencies
  and the train, test and integrations extras), of ``requirements/tools.in``, ``requirements/frameworks.in``
  and ``bench/requirements-bench.txt`` must be pinned in the lock, and every pin of it (a universal lock
  may pin a package twice, under different markers) must lie in the requirement's range. A range tightened
  in pyproject without regenerating the lock fails here.
* **Is the environment the lock?** Every installed distribution (the project itself aside) must be named
  in the lock; with ``--exact``, at the version the lock pins for this interpreter and platform.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
EXTRAS = ("train", "test", "integrations")  # what scripts/setup.sh installs; `flash` is for GPU machines only
INPUT_FILES = ("requirements/tools.in", "requirements/frameworks.in", "bench/requirements-bench.txt")
PROJECT = "mrgfast"


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503)
    version: Version
    marker: Marker | None
    line: int

    def applies(self, env: dict | None = None) -> bool:
        return self.marker is None or self.marker.evaluate(env)


@dataclass(frozen=True)
class Needed:
    requirement: Requirement
    source: str  # where it is asked for, for messages


def _logical_lines(text: str):
    """(first line number, text) per requirement, continuation lines joined, comments and options dropped."""
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield start, buf.strip()
        buf = ""
    if buf.strip():
        yield start, buf.strip()


def parse_lock(text: str, path: str = "lock") -> list[Pin]:
    pins = []
    for n, line in _logical_lines(text):
        spec = " ".join(tok for tok in line.split() if not tok.startswith("--hash="))
        if spec.startswith("-"):
            raise ValueError(f"{path}:{n}: options are not allowed in the lock: {spec!r}")
        try:
            req = Requirement(spec)
        except Exception as e:
            raise ValueError(f"{path}:{n}: not a requirement: {spec!r} ({e})") from None
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise ValueError(f"{path}:{n}: {req.name} is not pinned to one exact version: {spec!r}")
        pins.append(Pin(canonicalize_name(req.name), Version(specs[0].version), req.marker, n))
    return pins


def parse_requirements_file(path: Path) -> list[Needed]:
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    return [Needed(Requirement(line), f"{rel}:{n}") for n, line in _logical_lines(path.read_text())]


def needed(root: Path = ROOT) -> list[Needed]:
    """Every requirement scripts/setup.sh installs from, with where it comes from."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    out = [Needed(Requirement(r), "pyproject.toml dependencies") for r in project["dependencies"]]
    for extra in EXTRAS:
        out += [Needed(Requirement(r), f"pyproject.toml [{extra}]") for r in project["optional-dependencies"][extra]]
    for rel in INPUT_FILES:
        out += parse_requirements_file(root / rel)
    return out


def lock_problems(pins: list[Pin], wants: list[Needed]) -> list[str]:
    """What keeps the lock from being a resolution of ``wants`` (empty when it is one)."""
    by_name: dict[str, list[Pin]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(pin)
    problems = []
    for want in wants:
        req = want.requirement
        got = by_name.get(canonicalize_name(req.name), [])
        if not got:
            problems.append(f"{req.name} ({want.source}: {req}) is not in the lock")
        for pin in got:
            if not req.specifier.contains(pin.version, prereleases=True):
                problems.append(
                    f"the lock pins {pin.name}=={pin.version} (line {pin.line}) outside {want.source}'s range {req}"
                )
    return problems


def installed() -> dict[str, str]:
    """Canonical name -> version of every distribution installed in this interpreter's environment (pip freeze
    --all, as a dict): its site-packages only, not whatever a test or a .pth has put on sys.path since."""
    out = {}
    site = sorted({sysconfig.get_paths()[key] for key in ("purelib", "platlib")})
    for dist in metadata.distributions(path=site):
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonicalize_name(name), dist.version)
    return out


def freeze_problems(pins: list[Pin], have: dict[str, str], *, exact: bool, env: dict | None = None) -> list[str]:
    """Installed packages the lock does not name, and (``exact``) versions other than the lock's for ``env``."""
    named = {pin.name for pin in pins}
    problems = []
    for name, version in sorted(have.items()):
        if name == PROJECT:
            continue
        if name not in named:
            problems.append(f"{name}=={version} is installed but the lock does not name it")
            continue
        if exact:
            wanted = [p for p in pins if p.name == name and p.applies(env)]
            if not wanted:
                problems.append(f"{name}=={version} is installed but the lock pins it for other platforms only")
            elif all(p.version != Version(version) for p in wanted):
                problems.append(
                    f"{name}=={version} is installed but the lock pins {name}=={wanted[0].version} "
                    f"(line {wanted[0].line})"
                )
    return problems


def extras_installed(pins: list[Pin], have: dict[str, str]) -> list[str]:
    named = {pin.name for pin in pins}
    return sorted(n for n in have if n not in named and n != PROJECT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lock", type=Path, default=LOCK, help="the lock file (default: requirements/lock.txt)")
    ap.add_argument("--freeze", action="store_true", help="also check this interpreter's installed packages")
    ap.add_argument("--exact", action="store_true", help="with --freeze: versions must equal the lock's")
    ap.add_argument("--extras", action="store_true", help="only print installed packages the lock does not name")
    args = ap.parse_args(argv)
    pins = parse_lock(args.lock.read_text(), str(args.lock))
    if args.extras:
        print("\n".join(extras_installed(pins, installed())))
        return 0
    problems = lock_problems(pins, needed())
    if args.freeze:
        problems += freeze_problems(pins, installed(), exact=args.exact)
    for p in problems:
        print(f"lockcheck: {p}", file=sys.stderr)
    if not problems:
        print(f"lockcheck: {args.lock} ok ({len(pins)} pins)" + (", environment matches" if args.freeze else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
