"""Applet implementations a card can load: the stand-in for Java Card packages (CAP files).

No Java Card VM runs in paylab, so an executable load file is a *package descriptor* naming a
package AID that paylab knows; the load file's module AIDs map onto :class:`Applet` classes.
Loading a package the catalog does not know fails cleanly (6A80), as a card would reject a CAP
file it cannot link.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .applet import Applet


@dataclass(frozen=True)
class PackageInfo:
    """One loadable package: its AID, version and the applet classes of its modules."""

    package_aid: bytes
    version: str
    modules: dict[bytes, type[Applet]] = field(default_factory=dict)


class Catalog:
    """Known packages (by package AID) and implementations (by name)."""

    def __init__(self) -> None:
        self._packages: dict[bytes, PackageInfo] = {}
        self._implementations: dict[str, type[Applet]] = {}

    def register(self, package: PackageInfo) -> None:
        self._packages[package.package_aid] = package
        for cls in package.modules.values():
            self.register_implementation(cls)

    def register_implementation(self, cls: type[Applet]) -> None:
        if not cls.implementation:
            raise ValueError(f"{cls.__name__} has no implementation name")
        self._implementations[cls.implementation] = cls

    def package(self, aid: bytes) -> PackageInfo | None:
        return self._packages.get(aid)

    def packages(self) -> list[PackageInfo]:
        return list(self._packages.values())

    def implementation(self, name: str) -> type[Applet] | None:
        return self._implementations.get(name)
