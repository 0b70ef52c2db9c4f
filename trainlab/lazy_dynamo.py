"""torch.optim without importing torch._dynamo (2-3 s, about as long as torch itself).

torch's optimizers import torch._dynamo on their first call only to mark themselves as not
to be traced (`torch._disable_dynamo`: add_param_group, zero_grad, state_dict) and to break
graphs around `step()` (`_use_grad_for_differentiable`); in eager mode both do nothing. The
CLI installs a stand-in module that answers exactly those two calls, `disable(fn)` (returns
a function that calls `fn`, or the real `disable(fn)` once torch._dynamo is loaded) and
`graph_break()`. Any other use (torch.compile, an import of a submodule) loads the real
torch._dynamo in its place first, so compiled code sees the real module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable

NAME = "torch._dynamo"


def real_loaded() -> bool:
    return NAME in sys.modules and not isinstance(sys.modules[NAME], _StandIn)


def load_real() -> types.ModuleType:
    """Swap the stand-in out and import the real torch._dynamo."""
    if isinstance(sys.modules.get(NAME), _StandIn):
        del sys.modules[NAME]
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(torch.__dict__.get("_dynamo"), _StandIn):
            del torch._dynamo
    return importlib.import_module(NAME)


class _StandIn(types.ModuleType):
    def disable(self, fn: Callable | None = None, recursive: bool = True, wrapping: bool = True):
        if fn is None:  # used as @disable(recursive=...)
            return lambda f: self.disable(f, recursive, wrapping)
        real: list[Callable] = []

        def call(*args, **kwargs):
            if real_loaded():  # someone compiles: from now on torch's own behaviour
                if not real:
                    real.append(sys.modules[NAME].disable(fn, recursive, wrapping=wrapping))
                return real[0](*args, **kwargs)
            return fn(*args, **kwargs)

        return call

    def graph_break(self) -> None:
        if real_loaded():
            sys.modules[NAME].graph_break()

    def __getattr__(self, name: str):
        if name.startswith("__") and name != "__path__":  # tools probing modules (inspect)
            raise AttributeError(name)
        return getattr(load_real(), name)  # anything else: the real module


class _Existing(importlib.abc.Loader):
    """Loader of a module that loading its package just imported: reuse, never run twice."""

    def create_module(self, spec):
        return sys.modules[spec.name]

    def exec_module(self, module) -> None:
        pass


class _SubmoduleFinder(importlib.abc.MetaPathFinder):
    """`import torch._dynamo.x` while the stand-in is in place: the real package first."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(NAME + "."):
            return None
        load_real()
        if fullname in sys.modules:  # loading the package imported it already
            old = sys.modules[fullname].__spec__
            return importlib.machinery.ModuleSpec(
                fullname, _Existing(), origin=old.origin if old else None
            )
        return None  # the ordinary finders load it below the real package


def install() -> None:
    """Put the stand-in in place, unless torch._dynamo is loaded already."""
    if NAME in sys.modules:
        return
    sys.modules[NAME] = _StandIn(NAME)
    if not any(isinstance(f, _SubmoduleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SubmoduleFinder())
