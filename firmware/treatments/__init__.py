# Treatments: the pure, platform-agnostic logic of a session (DESIGN sections 3, 5, 6).
#
#   areas      which fingers an area or an explicit bit mask covers
#   flows      pattern generators: time in, per-finger intensity 0..100 out
#   strength   levels 1..10 -> target force, and the start/change ramp
#   contour    the contact scan that finds the back and its curvature
#   control    per-finger force control (position target from measured force)
#   tension    per-finger stiffness estimate, six report regions, before/after grade
#   programme  validation of uploaded programmes (JSON already decoded)
#
# No machine, no asyncio, no I/O, no clock: callers pass the time and the sensor readings in
# and get actuator commands out, so everything here runs unchanged on the device, on the host
# and on the MicroPython WebAssembly build. May import only firmware.runtime (for const).
# Hot-path methods (Pattern.fill, Ramp.step, ContourScan.step, ForceControl.step,
# Tension.observe) use small-int arithmetic and allocate nothing after construction.
