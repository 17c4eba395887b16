"""The shipped specs: where they are, and their names (no pydantic: `archc list` and the
CLI's argument checks import only this)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

ROOT_MARKER = ".archc-root"


def package_specs_dir() -> Path:
    """Where the shipped specs live (a source checkout or an installed package)."""
    here = Path(__file__).resolve().parent.parent  # archcompiler/
    for cand in (here.parent / "specs", here / "specs"):
        if (cand / ROOT_MARKER).is_file():
            return cand
    try:
        from importlib.resources import files

        return Path(str(files("archcompiler.specs")))
    except (ImportError, ModuleNotFoundError, TypeError):  # pragma: no cover
        return here / "specs"


def find_named_spec(name: str) -> Optional[Path]:
    """`inception_v4` (or `archc:inception_v4`) -> the shipped spec file, or None."""
    if name.startswith("archc:"):
        name = name[len("archc:"):]
    if not name.replace("_", "").replace("/", "").isalnum():
        return None
    path = package_specs_dir() / f"{name}.yaml"
    return path if path.is_file() else None


def shipped_spec_names() -> list[str]:
    base = package_specs_dir()
    names = sorted(p.stem for p in base.glob("*.yaml"))
    names += sorted(f"variants/{p.stem}" for p in (base / "variants").glob("*.yaml"))
    return names
