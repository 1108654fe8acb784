# Bonds and the pairing window (DESIGN section 7, docs/ble-protocol.md "Link, security, pairing").
#
# The BLE stack asks the application to store and find its pairing secrets through two IRQ
# events (MicroPython's bluetooth module: _IRQ_SET_SECRET, _IRQ_GET_SECRET). This module is that
# store, so the bonding policy lives in one place:
#   - a phone bonds only while the pairing window is open (opened by a long button press);
#     outside it the table does not change at all, so a phone spoofing a bonded one's address
#     cannot replace or delete that bond;
#   - at most MAX_BONDS phones; bonding one more replaces the one bonded longest ago (the window
#     is open by then, so only someone at the device can do it);
#   - a very long press forgets every bond.
# A secret's key starts with the peer's address (NimBLE's ble_addr_t: type byte + 6 address
# bytes; the host adapter uses the same layout), which is how secrets are grouped per phone;
# NimBLE keeps two per phone (sec_type 1, ours, and 2, the phone's).
# The stack also keeps one secret of its own: its IRK (sec_type 10, key b"irk"), asked for at
# every activation and saved when there is none. It is no phone's: it is kept whatever the
# window, never counts as a bond and survives "forget every phone". Refusing it would leave
# NimBLE on its fixed default IRK and, worse, skip the walk over the phones' secrets that loads
# their IRKs, so a bonded phone using a private address could not be recognised after a boot.
# Event order with NimBLE: a pairing's _IRQ_ENCRYPTION_UPDATE (bonded = what was negotiated,
# which the service's `bond=` config, i.e. the window, decides) comes before its
# _IRQ_SET_SECRETs; nothing here depends on seeing the secrets first.
# IRQ handlers run in the BLE stack's context: they only touch RAM; save() (called by the
# service's task) writes the flash, one atomic store write for the whole table.

import binascii

from firmware.runtime import const, ticks_add, ticks_diff, ticks_ms

MAX_BONDS = const(5)
WINDOW_MS = const(60_000)
PEER_KEY_LEN = const(7)
BONDS_FILE = "bonds"
SCHEMA = const(1)

_IRQ_GET_SECRET = const(29)
_IRQ_SET_SECRET = const(30)
SEC_TYPE_OWN_IRK = const(10)  # MicroPython's SECRET_TYPE_OUR_IRK
OWN_MAX = const(4)  # secrets of the stack's own the table keeps (it has one)


def _hex(b):
    return binascii.hexlify(b).decode()


def _unhex(s):
    return binascii.unhexlify(s)


def _check_secrets(rows):
    for t, k, v in rows:
        if type(t) is not int:
            raise ValueError("bonds: bad secret type")
        _unhex(k)
        _unhex(v)


def _check(obj):
    # the stored table:
    #   {"next": int, "peers": [{"peer": hex, "order": int, "secrets": [[type, key, value]]}],
    #    "own": [[type, key, value]]}   ("own": the stack's own secrets; absent in older tables)
    if not isinstance(obj, dict) or not isinstance(obj.get("peers"), list):
        raise ValueError("bonds: no peer list")
    if type(obj.get("next")) is not int:
        raise ValueError("bonds: no counter")
    if len(obj["peers"]) > MAX_BONDS:
        raise ValueError("bonds: more than %d peers" % MAX_BONDS)
    for p in obj["peers"]:
        if not isinstance(p, dict) or type(p.get("order")) is not int:
            raise ValueError("bonds: bad peer")
        _unhex(p["peer"])
        _check_secrets(p["secrets"])
    own = obj.get("own", [])
    if not isinstance(own, list) or len(own) > OWN_MAX:
        raise ValueError("bonds: bad own secrets")
    _check_secrets(own)
    for key in obj:
        if key not in ("next", "peers", "own"):
            raise ValueError("bonds: unknown key %s" % key)
    return obj


class Bonds:
    def __init__(self, store):
        self._store = store
        self._peers = []  # [peer bytes, order, {(type, key bytes): value bytes}]
        self._own = {}  # the stack's own secrets: {(type, key bytes): value bytes}
        self._next = 1
        self._dirty = False
        self._window_until = None
        self._load()

    # -- the table ----------------------------------------------------------------------------

    def _load(self):
        # a broken table is set aside by the store (its `problems` say why): BLE starts unbonded
        obj = self._store.load(BONDS_FILE, SCHEMA, _check)
        if obj is None:
            return
        self._next = obj["next"]
        for p in obj["peers"]:
            secrets = {}
            for t, k, v in p["secrets"]:
                secrets[(t, _unhex(k))] = _unhex(v)
            self._peers.append([_unhex(p["peer"]), p["order"], secrets])
        for t, k, v in obj.get("own", ()):
            self._own[(t, _unhex(k))] = _unhex(v)

    def save(self):
        # write the table if it changed; returns True when something was written
        if not self._dirty:
            return False
        peers = []
        for peer, order, secrets in self._peers:
            rows = [[t, _hex(k), _hex(v)] for (t, k), v in secrets.items()]
            peers.append({"peer": _hex(peer), "order": order, "secrets": rows})
        own = [[t, _hex(k), _hex(v)] for (t, k), v in self._own.items()]
        self._store.save(BONDS_FILE, {"next": self._next, "peers": peers, "own": own}, SCHEMA)
        self._dirty = False
        return True

    def count(self):
        return len(self._peers)

    def peers(self):
        # bonded addresses, oldest bond first
        return [p[0] for p in sorted(self._peers, key=lambda p: p[1])]

    def is_bonded(self, peer):
        return self._find(bytes(peer[:PEER_KEY_LEN])) is not None

    def clear(self):
        # every phone; the stack's own IRK stays (it is not a bond)
        self._peers = []
        self._dirty = True

    def _find(self, peer):
        for p in self._peers:
            if p[0] == peer:
                return p
        return None

    # -- the pairing window -------------------------------------------------------------------

    def open_window(self, ms=WINDOW_MS):
        self._window_until = ticks_add(ticks_ms(), ms)

    def close_window(self):
        self._window_until = None

    def window_open(self):
        if self._window_until is None:
            return False
        if ticks_diff(self._window_until, ticks_ms()) <= 0:
            self._window_until = None
            return False
        return True

    # -- the stack's secret store (IRQ events) -------------------------------------------------

    def set_secret(self, sec_type, key, value):
        # Outside the window nothing changes: not a new phone, and not a bonded phone's keys
        # either (deleted or replaced), since anyone can pair Just Works using a bonded phone's
        # address; its real owner's bond must survive that.
        if sec_type == SEC_TYPE_OWN_IRK:
            return self._set_own(sec_type, bytes(key), value)
        if not self.window_open():
            return False
        key = bytes(key)
        peer = key[:PEER_KEY_LEN]
        p = self._find(peer)
        if value is None:
            if p is None or (sec_type, key) not in p[2]:
                return False
            del p[2][(sec_type, key)]
            if not p[2]:
                self._peers.remove(p)
            self._dirty = True
            return True
        if p is None:
            if len(self._peers) >= MAX_BONDS:
                oldest = min(self._peers, key=lambda q: q[1])
                self._peers.remove(oldest)
            p = [peer, self._next, {}]
            self._next += 1
            self._peers.append(p)
        p[2][(sec_type, key)] = bytes(value)
        self._dirty = True
        return True

    def _set_own(self, sec_type, key, value):
        # the stack's own secret: no phone can cause this write (see the top of this file)
        k = (sec_type, key)
        if value is None:
            if k not in self._own:
                return False
            del self._own[k]
        elif self._own.get(k) == value:
            return True
        elif k not in self._own and len(self._own) >= OWN_MAX:
            return False
        else:
            self._own[k] = bytes(value)
        self._dirty = True
        return True

    def get_secret(self, sec_type, index, key):
        if sec_type == SEC_TYPE_OWN_IRK:
            if key is not None:
                return self._own.get((sec_type, bytes(key)))
            rows = [v for (t, _k), v in self._own.items() if t == sec_type]
            return rows[index] if index < len(rows) else None
        if key is None:
            i = 0
            for p in sorted(self._peers, key=lambda q: q[1]):
                for (t, _k), v in p[2].items():
                    if t == sec_type:
                        if i == index:
                            return v
                        i += 1
            return None
        key = bytes(key)
        p = self._find(key[:PEER_KEY_LEN])
        if p is None:
            return None
        return p[2].get((sec_type, key))

    def irq(self, event, data):
        # registered with aioble.core.register_irq_handler before aioble.security is imported,
        # so the stack's secrets come here; None lets other handlers see the event
        if event == _IRQ_SET_SECRET:
            sec_type, key, value = data
            return self.set_secret(sec_type, key, None if value is None else bytes(value))
        if event == _IRQ_GET_SECRET:
            sec_type, index, key = data
            return self.get_secret(sec_type, index, key)
        return None
