"""The simulated BackHug: physics of a person (or the factory test rig) on the device, the finger
actuators and force sensors, the leg rest, wired to the emulated chips behind the fake `machine`
module, with fault injection; `python -m backhug_host.sim` runs it (docs/simulator.md).

person, rig, actuators, legrest: plain classes driven by time, no emulator needed.
device: SimDevice, the assembly with the emulated World; faults: what can be broken and how.
"""
