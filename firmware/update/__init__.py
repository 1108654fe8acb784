# Firmware updates (docs/updates.md): signed bundles, Ed25519, the two slots, boot selector, SMP.
