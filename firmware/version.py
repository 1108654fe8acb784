# The firmware's semantic version: reported in the Device Information Service and, from the
# update issue on, written into every signed bundle's manifest.
VERSION = "0.2.0"
