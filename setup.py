"""Packaging for tradingview_scraper. Metadata and pinned dependencies come from settings.ini (nbdev).

The package data: profiles.yaml, the embedded sample (sample/*.parquet, PROVENANCE.json) and the production
notebooks (production/*.ipynb) that `tvs run` executes. Those notebooks are edited in nbs/production/; `make export`
copies them into the package and `make test` fails when the copy differs. A build from a checkout (wheel or sdist)
takes them from nbs/production/ itself, so a release never ships a stale copy.

Deliberately free of `pkg_resources` (removed from current setuptools)."""
import shutil
from configparser import ConfigParser
from pathlib import Path

import setuptools
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

here = Path(__file__).parent
config = ConfigParser(delimiters=["="])
config.read(here / "settings.ini", encoding="utf-8")
cfg = config["DEFAULT"]

for key in "version description keywords author author_email license min_python lib_name user".split():
    if key not in cfg:
        raise SystemExit(f"settings.ini is missing required key {key!r}")

licenses = {
    "apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License"),
    "mit": ("MIT License", "OSI Approved :: MIT License"),
}
statuses = ["Planning", "Pre-Alpha", "Alpha", "Beta", "Production/Stable", "Mature", "Inactive"]
lic = licenses.get(cfg["license"].lower(), (cfg["license"], None))
requirements = cfg.get("requirements", "").split()
dev_requirements = cfg.get("dev_requirements", "").split()
console_scripts = [s for s in cfg.get("console_scripts", "").split() if s]


def copy_production_notebooks(lib_dir: Path) -> None:
    "Make lib_dir/production/ hold exactly the production notebooks of nbs/production/, when building from a checkout."
    src = here / cfg["nbs_path"] / "production"
    if not src.is_dir(): return                          # building from an sdist: its package copy is the one to ship
    dest = lib_dir / "production"
    dest.mkdir(parents=True, exist_ok=True)
    want = {p.name for p in src.glob("*.ipynb") if not p.name.startswith((".", "_"))}
    for p in dest.glob("*.ipynb"):
        if p.name not in want: p.unlink()
    for name in sorted(want):
        (dest / name).unlink(missing_ok=True)            # the release tree may hard-link the checkout's file: never write through it
        shutil.copyfile(src / name, dest / name)


class build_py_with_production(build_py):
    "build_py, then the production notebooks of nbs/production/ into the build."
    def run(self):
        super().run()
        copy_production_notebooks(Path(self.build_lib) / cfg["lib_path"])


class sdist_with_production(sdist):
    """sdist with settings.ini (this setup.py reads the metadata from it; `python -m build` builds the wheel from the
    sdist) and the production notebooks of nbs/production/."""
    def make_distribution(self):
        self.filelist.append("settings.ini")
        super().make_distribution()

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        copy_production_notebooks(Path(base_dir) / cfg["lib_path"])


setuptools.setup(
    name=cfg["lib_name"].replace("_", "-"),
    version=cfg["version"],
    description=cfg["description"],
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license=lic[0],
    author=cfg["author"],
    author_email=cfg["author_email"],
    keywords=cfg["keywords"],
    classifiers=[
        "Development Status :: " + cfg["status"] + " - " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "Natural Language :: " + cfg["language"].title(),
        "Programming Language :: Python :: 3.11",
    ]
    + (["License :: " + lic[1]] if lic[1] else []),
    url=cfg["git_url"],
    packages=setuptools.find_packages(include=[cfg["lib_name"], cfg["lib_name"] + ".*"]),
    include_package_data=True,
    package_data={cfg["lib_name"]: ["*.yaml", "**/*.yaml", "**/*.parquet", "**/*.json", "production/*.ipynb"]},
    cmdclass={"build_py": build_py_with_production, "sdist": sdist_with_production},
    install_requires=requirements,
    extras_require={"dev": dev_requirements},
    python_requires=">=" + cfg["min_python"],
    zip_safe=False,
    entry_points={"console_scripts": console_scripts, "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
