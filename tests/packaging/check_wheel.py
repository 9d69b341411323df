"""Run by ``.ci/run`` with the interpreter of a fresh venv holding only the wheel.

Checks what a user's ``pip install resilient-kit[requests]`` gives them:
``resilient`` is imported from site-packages (not from a source tree), every
public name loads, ``py.typed`` is installed with the package, the pytest
plugin is registered under ``pytest11``, the ``httpx`` extra requires no HTTP
client, and the modules of the extras not installed (``redis``, ``httpx``) say
which extra to install when imported.

Usage: python -I check_wheel.py SOURCE_TREE
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path


def main(source_tree: Path) -> None:
    import resilient

    package = Path(resilient.__file__).resolve().parent
    assert "site-packages" in package.parts, f"resilient imported from {package}"
    assert source_tree not in package.parents, f"resilient imported from the source tree: {package}"
    assert not any(Path(entry or ".").resolve() == source_tree for entry in sys.path), sys.path

    # Every name of __all__, plus the two that need the requests extra.
    names = [*resilient.__all__, "create_resilient_session", "get_json_or_none"]
    missing = [name for name in names if getattr(resilient, name, None) is None]
    assert not missing, f"names that did not load: {missing}"

    assert (package / "py.typed").is_file(), f"no py.typed in {package}"
    recorded = {str(path) for path in importlib.metadata.files("resilient-kit") or ()}
    assert "resilient/py.typed" in recorded, "py.typed is not in the wheel's RECORD"

    plugins = {ep.name: ep for ep in importlib.metadata.entry_points(group="pytest11")}
    assert "resilient" in plugins, f"no pytest11 entry point 'resilient' in {sorted(plugins)}"
    assert plugins["resilient"].value == "resilient._pytest_plugin", plugins["resilient"].value
    plugin = plugins["resilient"].load()
    assert plugin.__name__ == "resilient._pytest_plugin", plugin

    # resilient-kit[httpx] requires no client: the user's choice of httpx or httpx2 stands.
    metadata = importlib.metadata.metadata("resilient-kit")
    assert "httpx" in (metadata.get_all("Provides-Extra") or []), "no httpx extra"
    requires = [r.replace("'", '"') for r in metadata.get_all("Requires-Dist") or []]
    pulled = [r for r in requires if 'extra == "httpx"' in r]
    assert not pulled, f"the httpx extra requires {pulled}"

    # The extras this venv lacks: importing their module says which extra to install.
    for module, extra in (("resilient.redis", "redis"), ("resilient.httpx", "httpx")):
        try:
            importlib.import_module(module)
        except ImportError as error:
            said = str(error)
        else:
            raise AssertionError(f"{module} imported without its extra")
        assert f"resilient-kit[{extra}]" in said, f"{module}: {said}"

    version = importlib.metadata.version("resilient-kit")
    print(
        f"resilient-kit {version} from {package}: {len(names)} public names load, "
        f"py.typed installed, pytest11 entry point 'resilient' -> {plugin.__name__}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
