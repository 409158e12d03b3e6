"""Device non-idealities for any system and rule: read noise on the measured states and pulsed, bounded,
asymmetric parameter updates (the pulsed-device families of IBM's aihwkit, written from their formulas)."""

from eqprop.devices.config import Devices, HardwareConfig
from eqprop.devices.pulsed import DeviceArray
from eqprop.devices.readout import NoisyReadout

__all__ = ["DeviceArray", "Devices", "HardwareConfig", "NoisyReadout"]
