"""Makes this interpreter look like an install with fewer extras.

The packages named in NEUROJAM_TEST_BLOCKED (importable names) and NEUROJAM_TEST_BLOCKED_DISTS (distribution names)
are not there: importing one raises ModuleNotFoundError, ``importlib.util.find_spec`` answers None and
``importlib.metadata`` does not list it, as if pip had never installed it. tests/test_install_profiles.py puts this
folder on PYTHONPATH, so every process a command starts inherits the same install.
"""

import os
import sys

BLOCKED = frozenset(filter(None, os.environ.get("NEUROJAM_TEST_BLOCKED", "").split(",")))
BLOCKED_DISTS = frozenset(filter(None, os.environ.get("NEUROJAM_TEST_BLOCKED_DISTS", "").split(",")))


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


class NotInstalled:
    """Wraps one of the interpreter's finders and hides the blocked packages from it."""

    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        return self.inner.find_spec(name, path, target)

    def find_distributions(self, *args, **kwargs):
        found = getattr(self.inner, "find_distributions", None)
        for dist in found(*args, **kwargs) if found else ():
            if _canonical(dist.metadata["Name"] or "") not in BLOCKED_DISTS:
                yield dist

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


if BLOCKED:
    sys.meta_path[:] = [NotInstalled(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
