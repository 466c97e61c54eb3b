"""Serving a blob from the registry's own data file, the fastest correct way per connection.

- A plain TCP connection: the kernel's ``sendfile``, the bytes never enter the process.
- A TLS connection: the kernel cannot encrypt for asyncio's TLS (it drives OpenSSL through
  memory buffers, so kernel TLS, which needs OpenSSL on the socket itself, is not available
  to it). The file is read in large pieces (:data:`TLS_READ_BYTES`) in a worker thread, the
  next one while the previous is encrypted and sent, instead of aiohttp's fallback of 256 KiB
  reads one after the other, which made the sendfile path half as fast as streaming from the
  registry over TLS. ``bench/proxy_bench.py`` measures both (its ``gatekeeper-tls-*`` targets;
  figures in ``bench/README.md``).

Either way the bytes actually handed to the connection are recorded (``RequestInfo.bytes_out``)
when the client hangs up half way, so its access-log row says what it got, not the file size.
"""

from __future__ import annotations

import asyncio
import os
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from proxy.context import info

TLS_READ_BYTES = 1 << 20
"""One read of the file for a TLS connection. Two are held per transfer (the one being sent,
the next one being read), so 200 concurrent TLS pulls hold about 400 MiB at most; larger
pieces measured no faster (see ``bench/README.md``)."""


def is_tls(request: BaseRequest) -> bool:
    """The connection is TLS (asyncio's TLS transport reports its SSL object)."""
    transport = request.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class KernelFileResponse(web.FileResponse):
    """A FileResponse that can be prepared early (by the audit middleware, to count the bytes
    it sent) and then again by aiohttp without sending the file twice; it sends the body by
    the path of this module's docstring and records how much of it left."""

    sent = 0
    """Body bytes handed to the connection so far."""

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)

    async def _sendfile(
        self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        writer = await web.StreamResponse.prepare(self, request)  # the status line, headers
        assert writer is not None
        transport = request.transport
        if not isinstance(transport, asyncio.WriteTransport):
            raise ConnectionResetError("Connection lost")
        try:
            if is_tls(request) or not await self._kernel_sendfile(transport, fobj, offset, count):
                await self._write_pieces(writer, fobj, offset, count)
        finally:
            if isinstance(request, web.Request):
                info(request).bytes_out = self.sent
        await web.StreamResponse.write_eof(self)
        return writer

    async def _kernel_sendfile(
        self, transport: asyncio.WriteTransport, fobj: IO[Any], offset: int, count: int
    ) -> bool:
        """The kernel sends the file; False (nothing sent) where the transport cannot."""
        loop = asyncio.get_running_loop()
        try:
            await loop.sendfile(transport, fobj, offset, count, fallback=False)
        except NotImplementedError:
            return False
        finally:
            # The file position follows what the kernel sent, also on a failure.
            self.sent = max(fobj.tell() - offset, 0)
        return True

    async def _write_pieces(
        self, writer: AbstractStreamWriter, fobj: IO[Any], offset: int, count: int
    ) -> None:
        """Send the file's ``count`` bytes from ``offset``, read in a worker thread
        :data:`TLS_READ_BYTES` at a time, the next read running while a piece is sent."""
        loop = asyncio.get_running_loop()
        fd = fobj.fileno()
        end = offset + count

        def read(at: int) -> asyncio.Future[bytes]:
            return loop.run_in_executor(None, os.pread, fd, min(TLS_READ_BYTES, end - at), at)

        pending: asyncio.Future[bytes] | None = read(offset)
        try:
            while pending is not None:
                piece = await pending
                if not piece:
                    raise RuntimeError("the blob file is shorter than its size")
                at = offset + self.sent + len(piece)
                pending = read(at) if at < end else None
                await writer.write(piece)
                self.sent += len(piece)
            await writer.drain()
        finally:
            if pending is not None and not pending.done():
                # The file is closed after this returns: no read of it may still be running.
                await asyncio.wait([pending])
            if pending is not None and not pending.cancelled():
                pending.exception()  # retrieved: the failure to report is the one raised
