"""The catalog an emulated card runs with by default: the security domain plus whichever of
paylab's applet modules are present.

Each optional module is imported on its own; one that is missing (or fails to import) is skipped,
so the catalog works with what exists. Implementation names a fabricated card refers to without
loading a package (the PPSE, an OS application) get a stand-in class that raises an
:class:`ImportError` naming the missing module when the card first instantiates it, so the
failure shows where it matters (the runtime answers 6F00 and records the message in ``faults``).
Errors other than :class:`ImportError` raised while importing a module are bugs and propagate.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .applet import Applet
from .catalog import Catalog, PackageInfo
from .gp.security_domain import SecurityDomain

if TYPE_CHECKING:
    from .runtime import SecureElement


@dataclass(frozen=True)
class OptionalModule:
    """An applet module the default catalog picks up when it is importable."""

    module: str                            # relative to ``paylab.drivers.se``
    applet_class: str | None = None        # registered by implementation name
    implementation: str | None = None      # name to reserve with a stand-in when the module is missing
    package: str | None = "PACKAGE"        # attribute holding a PackageInfo, registered when present


OPTIONAL_MODULES: tuple[OptionalModule, ...] = (
    OptionalModule("gp.ppse", applet_class="PpseApplet", implementation="paylab.ppse"),
    OptionalModule("applets.pboc"),
    OptionalModule("applets.remote_sign"),
)


def default_catalog() -> Catalog:
    """A catalog with :class:`SecurityDomain` and every importable module of :data:`OPTIONAL_MODULES`."""
    catalog = Catalog()
    catalog.register_implementation(SecurityDomain)
    for optional in OPTIONAL_MODULES:
        _register(catalog, optional)
    return catalog


def _register(catalog: Catalog, optional: OptionalModule) -> None:
    name = f"{__package__}.{optional.module}"
    try:
        module = importlib.import_module(name)
        applet_class = _attribute(module, name, optional.applet_class) if optional.applet_class else None
    except ImportError as exc:
        if optional.implementation:
            catalog.register_implementation(_unavailable(optional.implementation, name, exc))
        return
    if applet_class is not None:
        catalog.register_implementation(applet_class)
    package = getattr(module, optional.package, None) if optional.package else None
    if isinstance(package, PackageInfo):
        catalog.register(package)


def _attribute(module: object, module_name: str, attribute: str) -> type[Applet]:
    """``from module import attribute`` semantics: a missing name is an ImportError."""
    value = getattr(module, attribute, None)
    if not (isinstance(value, type) and issubclass(value, Applet)):
        raise ImportError(f"cannot import applet class {attribute!r} from {module_name!r}", name=module_name)
    return value


def _unavailable(implementation: str, module_name: str, error: ImportError) -> type[Applet]:
    message = f"applet implementation {implementation!r} needs {module_name}, which failed to import: {error}"

    class Unavailable(Applet):
        __doc__ = message

        def __init__(self, se: SecureElement, aid: bytes) -> None:
            raise ImportError(message, name=module_name)

    Unavailable.implementation = implementation
    Unavailable.__name__ = Unavailable.__qualname__ = f"Unavailable[{implementation}]"
    return Unavailable
