"""Rigs: the YAML inventory (resources, passive), the binding of resources to drivers, the health
check, and the built-in simulated rig ``sim`` (labgrid's resource/driver/protocol split).

    from paylab.lab.rig import SimRig, check_rig, load_inventory, bind

    with SimRig() as sim:                      # or: bound = bind(load_inventory().get("bench-1"))
        reader = sim.bound.reader("contact")   # a CardReaderProtocol, same call on a real bench
        verdicts = check_rig(sim.bound)
"""

from .binding import BoundRig, UnknownResource, bind
from .health import ResourceVerdict, check_rig
from .inventory import SIM_RIG_NAME, Inventory, InventoryError, default_inventory_path, load_inventory, parse_inventory
from .resources import (
    CAPABILITIES,
    AntennaResource,
    BackendEndpoints,
    CardSlot,
    EquipmentIdentity,
    HandsetResource,
    PosResource,
    ReaderResource,
    Rig,
    SshHostResource,
)
from .sim import SimRig

__all__ = [
    "CAPABILITIES", "SIM_RIG_NAME", "AntennaResource", "BackendEndpoints", "BoundRig", "CardSlot",
    "EquipmentIdentity", "HandsetResource", "Inventory", "InventoryError", "PosResource", "ReaderResource",
    "ResourceVerdict", "Rig", "SimRig", "SshHostResource", "UnknownResource", "bind", "check_rig",
    "default_inventory_path", "load_inventory", "parse_inventory",
]
