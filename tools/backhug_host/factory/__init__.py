"""Factory and bench tools: provisioning (provision.py, `backhug-provision`), the end-of-line test
(eol.py, `backhug-eol`), the offline package cache (mipcache.py), and the device link they share
(devlink.py: a few file and exec operations over an mpremote Transport, which the tests replace
with a scripted raw-REPL stand-in). Host code only; docs/factory.md is the line procedure.
"""
