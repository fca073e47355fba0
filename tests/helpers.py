"""Small helpers shared by the system tests (importable: pytest puts tests/ on sys.path)."""
import hashlib
import os
from pathlib import Path


def tree_digest(root: Path) -> dict:
    "Every entry under `root` (links not followed): its kind and, for files, a hash of the bytes."
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = ("link", os.readlink(p)) if p.is_symlink() else \
                ("dir",) if p.is_dir() else ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return out
