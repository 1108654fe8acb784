# BLE services of the device: the wire format (proto), the bond store and pairing window
# (bonds), the GATT server on aioble (service).
