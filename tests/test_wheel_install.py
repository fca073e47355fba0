"""The installed product: a wheel built from this checkout, installed (not editable) into a fresh venv, runs the main
job from a directory that is not the repository, offline, and reads nothing from the checkout.

How the venv is built, offline and fast, without letting the checkout in:

* The wheel is built from a copy of the source tree (so a stale `build/` in the checkout can never leak into it):
  `pip wheel --no-deps --no-build-isolation --no-index`, with the dev venv's setuptools and wheel.
* The venv is a plain `python -m venv --without-pip` venv (no system site-packages). Its dependencies are the dev
  venv's installed distributions, but only the runtime closure of the wheel's own `Requires-Dist` (plus pip and
  setuptools, what `python -m venv` gives on Python 3.11): each of their top-level entries (from the distribution's
  RECORD) is symlinked into a `deps/` directory that a `.pth` line puts on the venv's sys.path. A plain path line
  in a `.pth` does not process the `.pth` files inside it, and `deps/` holds only those distributions: the dev
  venv's editable install of tradingview_scraper (its finder and `.pth`), its dist-info, and the dev-only packages
  (nbdev, fastcore, jupyterlab, ...) are invisible — a missing runtime dependency fails here as it would for a
  user. Their data files outside site-packages (the ipykernel kernelspec, nbconvert's templates) are copied into
  the venv's `share/`, where a real install puts them.
* The wheel is then installed by pip for real, `--no-index --find-links <the wheel>`: pip resolves every pinned
  requirement against `deps/` ("already satisfied"), so an unsatisfiable pin fails the test, and nothing is
  downloaded. No copies of the 700 MB of dependencies: the venv takes a few seconds.
* Every process of the venv (tvs, and the papermill kernel it starts) runs with an audit hook (a `.pth` of the venv
  imports it at start-up) that records every file or directory opened under the checkout, outside the dev venv
  (which `deps/` points into); the test asserts the record is empty. Bytecode writes are off, so nothing is written
  into the dev venv through the symlinks either.
"""
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import time
from email.parser import Parser
from pathlib import Path
from zipfile import ZipFile

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DEV_PREFIX = Path(sys.prefix).resolve()
NOT_SOURCE = ("__pycache__", ".ipynb_checkpoints", "*.egg-info")            # anywhere in the tree
NOT_SOURCE_TOP = {".venv", ".git", "build", "dist", "runs", "data", "_proc", "_docs", ".pytest_cache"}   # at its root only
NOISE = ("without encryption", "is not able to be represented")

GUARD = '''
import os, sys
_ROOT, _ALLOWED, _LOG = {root!r}, {allowed!r}, {log!r}
_EVENTS = {{"open", "os.listdir", "os.scandir", "os.chdir", "os.mkdir", "os.remove", "os.rename", "os.rmdir"}}
def _inside(p, d): return p == d or p.startswith(d + os.sep)
def _hook(event, args):
    if event not in _EVENTS or not args or not isinstance(args[0], (str, bytes, os.PathLike)): return
    try: p = os.path.realpath(os.fsdecode(args[0]))
    except Exception: return
    if _inside(p, _ROOT) and not any(_inside(p, a) for a in _ALLOWED):
        with open(_LOG, "a", encoding="utf-8") as f: f.write(f"{{event}} {{p}} (by {{sys.argv}})\\n")
sys.addaudithook(_hook)
'''


def runtime_closure(wheel: Path) -> list:
    "The dev venv's distributions the wheel needs at run time: its Requires-Dist (not the `dev` extra), transitively."
    with ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    todo = [(Requirement(r), "") for r in meta.get_all("Requires-Dist")] + [(Requirement("pip"), ""), (Requirement("setuptools"), "")]
    dists, done = {}, set()
    while todo:
        req, extra = todo.pop()                     # `extra`: the extra of the requiring distribution this came from
        if req.marker is not None and not req.marker.evaluate({"extra": extra}): continue
        name = req.name.lower().replace("_", "-")
        dists.setdefault(name, md.distribution(name))
        for e in {""} | set(req.extras):            # bleach[css] needs what bleach's "css" extra requires
            if (name, e) not in done:
                done.add((name, e))
                todo += [(Requirement(r), e) for r in dists[name].requires or []]
    return list(dists.values())


def link_dependencies(dists: list, deps: Path, venv: Path) -> None:
    "Symlink each distribution's top-level entries into `deps/`; copy its `share/` data files into the venv."
    deps.mkdir()
    for dist in dists:
        for f in dist.files or []:
            top = Path(f).parts[0]
            if top == "..":                         # outside site-packages: scripts (not needed) and data files
                rel = Path(dist.locate_file(f)).resolve().relative_to(DEV_PREFIX)
                if rel.parts[0] == "share":         # the kernelspec, nbconvert's templates: where an install puts them
                    (venv / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(dist.locate_file(f), venv / rel)
            elif top != "__pycache__" and not top.endswith(".pth") and not (deps / top).is_symlink():
                (deps / top).symlink_to(dist.locate_file(top))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    "A fresh venv with the wheel of this checkout installed: its paths, the environment for its processes, pip's output."
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.resolve().is_relative_to(ROOT), "the scratch space must be outside the checkout the test guards"
    t0 = time.perf_counter()
    src = tmp / "src"
    anywhere = shutil.ignore_patterns(*NOT_SOURCE)
    ignore = lambda d, names: anywhere(d, names) | (NOT_SOURCE_TOP & set(names) if Path(d) == ROOT else set())
    shutil.copytree(ROOT, src, ignore=ignore, symlinks=True)
    stale = src / "tradingview_scraper" / "production"          # a checkout that forgot `make export`: the builds must
    (stale / "flow.ipynb").write_text('{"stale": true}\n')      # take nbs/production, not the package's stale copy
    (stale / "removed.ipynb").write_text('{"stale": true}\n')
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--disable-pip-version-check", "-q", "-w", str(tmp / "wheels"), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = (tmp / "wheels").glob("tradingview_scraper-*.whl")
    t1 = time.perf_counter()
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True, cwd=tmp).stdout.strip())
    link_dependencies(runtime_closure(wheel), tmp / "deps", venv)
    (purelib / "_dev_deps.pth").write_text(f"{tmp / 'deps'}\n")
    log = tmp / "checkout-reads.log"
    (purelib / "_tvs_checkout_guard.py").write_text(GUARD.format(root=str(ROOT), allowed=[str(DEV_PREFIX)], log=str(log)))
    (purelib / "_tvs_checkout_guard.pth").write_text("import _tvs_checkout_guard\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TVS_", "PYTHON", "VIRTUAL_ENV", "CONDA"))}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != DEV_PREFIX / "bin"]
    env.update(PATH=os.pathsep.join([str(venv / "bin"), *path]), VIRTUAL_ENV=str(venv), PYTHONDONTWRITEBYTECODE="1",
               RAY_AUTH_MODE="disabled", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-cache-dir",
                          "--find-links", str(tmp / "wheels"), "tradingview-scraper"],
                         capture_output=True, text=True, env=env, cwd=tmp, timeout=300)   # not the checkout: `-m` puts the cwd on sys.path
    assert pip.returncode == 0, pip.stdout + pip.stderr
    t2 = time.perf_counter()
    print(f"\nwheel build {t1 - t0:.1f} s, venv + install {t2 - t1:.1f} s")
    return {"venv": venv, "purelib": purelib, "env": env, "log": log, "tmp": tmp, "pip": pip.stdout, "src": src, "wheel": wheel}


def in_venv(installed, *args, cwd):
    "Run a command of the venv's bin/ in `cwd`, with the venv's environment."
    return subprocess.run([str(installed["venv"] / "bin" / args[0]), *args[1:]], capture_output=True, text=True,
                          cwd=cwd, env=installed["env"], timeout=600)


def test_the_wheel_installs_for_real(installed):
    purelib = installed["purelib"]
    r = in_venv(installed, "python", "-c", "import tradingview_scraper as t, sys; print(t.__file__); print(t.__version__)",
                cwd=installed["tmp"])
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.split()[0]).parent == purelib / "tradingview_scraper"          # the wheel's copy, not the checkout
    version = in_venv(installed, "tvs", "--version", cwd=installed["tmp"])               # the entry point and the CLI's imports
    assert version.returncode == 0 and version.stdout.split()[-1] == r.stdout.split()[1], version.stdout + version.stderr
    assert "Requirement already satisfied: pandas==" in installed["pip"]              # pins resolved, nothing fetched
    pkg = purelib / "tradingview_scraper"
    for f in ("profiles.yaml", "sample/sp500.parquet", "sample/PROVENANCE.json", "production/flow.ipynb"):
        assert (pkg / f).is_file(), f
    shipped = {p.name: p.read_bytes() for p in (pkg / "production").iterdir()}
    assert shipped == {p.name: p.read_bytes() for p in (ROOT / "nbs" / "production").glob("*.ipynb")}   # not the stale copy
    assert not list(purelib.glob("__editable__*")) and not (purelib / "nbdev").exists()    # no dev install, no dev tools
    assert not installed["log"].exists(), installed["log"].read_text()


def test_python_m_build_makes_the_same_wheel_from_the_sdist(installed):
    """`python -m build` builds an sdist, then the wheel from it (no nbs/ there): the sdist carries settings.ini, the
    package data and nbs/production's notebooks, so that wheel holds exactly the files of the one built from the tree."""
    out = installed["tmp"] / "build"
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(installed["src"])],
                       capture_output=True, text=True, cwd=installed["tmp"], timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [from_sdist] = out.glob("*.whl")
    def files(whl):
        with ZipFile(whl) as z:
            return {n: z.read(n) for n in z.namelist() if ".dist-info/" not in n}
    assert files(from_sdist) == files(installed["wheel"])


def run_profile(installed, profile, run_id):
    work = installed["tmp"] / f"work-{profile}"                         # an empty directory, not the repository
    work.mkdir()
    t0 = time.perf_counter()
    r = in_venv(installed, "tvs", "run", "--profile", profile, "--run-id", run_id, cwd=work)
    print(f"\ntvs run --profile {profile} from the wheel: {time.perf_counter() - t0:.1f} s")   # a figure, not a check
    assert r.returncode == 0, r.stdout + r.stderr
    run = work / "runs" / run_id
    assert "succeeded" in r.stdout and (run / "reports" / "report.html").is_file() and (run / "reports" / "summary.md").is_file()
    assert (work / "data" / "sample_lakehouse").is_dir()                 # the profile's lakehouse, relative to the cwd
    nb = json.loads((run / "notebooks" / "flow.ipynb").read_text())
    assert Path(nb["metadata"]["papermill"]["input_path"]) == installed["purelib"] / "tradingview_scraper" / "production" / "flow.ipynb"
    assert [w for w in NOISE if w in r.stderr] == [], r.stderr
    assert "without encryption" not in (run / "logs" / "kernel.log").read_text()
    html = (run / "notebooks" / "flow.html").read_text()
    assert 'id="tvs-figure-0"' in html and html.count("plotly.js v") == 1
    assert not installed["log"].exists(), "read from the checkout:\n" + installed["log"].read_text()[:3000]
    return r


def test_development_runs_from_the_installed_wheel(installed):
    run_profile(installed, "development", "wheel-dev")


@pytest.mark.slow
def test_canary_runs_from_the_installed_wheel(installed):
    run_profile(installed, "canary", "wheel-canary")
