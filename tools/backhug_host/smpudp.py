"""SMP over UDP for the simulated device (and the factory's Wi-Fi): the firmware's SmpServer
(firmware/update/smp.py) behind an asyncio datagram endpoint, one SMP packet per datagram, as
smpclient's SMPUDPTransport expects (port 1337 by default).

Each datagram is answered by its own task that awaits the server (SmpServer.handle_async), so
the simulated device's other tasks run while a long request (an upload's last chunk) is being
processed, as on the device; a datagram that comes meanwhile is answered EBUSY by the server.

UDP has no pairing: whoever reaches the port may update the device, as on any MCUmgr UDP
transport. It binds to loopback by default; serve it wider only on a trusted network.
"""

from __future__ import annotations

import asyncio

DEFAULT_PORT = 1337
DATAGRAM_MAX = 1472  # Ethernet MTU 1500 - IPv4 and UDP headers: smpclient's default request size


class SmpUdp(asyncio.DatagramProtocol):
    def __init__(self, server):
        self.server = server  # firmware.update.smp.SmpServer, or a callable returning one
        self.transport = None
        self.requests = 0
        self._tasks = set()  # answers being worked on (asyncio keeps only weak references)

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        server = self.server() if callable(self.server) else self.server
        if server is None:
            return  # the device is rebooting: like a device that does not answer yet
        self.requests += 1
        task = asyncio.ensure_future(self._answer(server, data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, server, data, addr):
        rsp = await server.handle_async(data, DATAGRAM_MAX)
        if rsp is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(rsp, addr)

    @property
    def port(self):
        return self.transport.get_extra_info("sockname")[1]

    def close(self):
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()


async def serve(server, port=DEFAULT_PORT, host="127.0.0.1"):
    """Start answering SMP on UDP host:port (0: any free port; read it back from .port)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: SmpUdp(server), local_addr=(host, port)
    )
    return protocol
