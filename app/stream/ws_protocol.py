"""uvicorn's WebSocket protocol with the stream limits enforced where the bytes arrive, before the app sees them.

uvicorn's default (`websockets-sansio`) protocol answers every ping at once, whether or not the client reads:
a client that floods pings and never reads grows the server's write buffer without bound (and keeps the event
loop parsing pings). This subclass, while the transport is above its high-water mark, keeps only the newest
unanswered pong (RFC 6455 5.5.3 lets an endpoint answer only the most recent ping) and stops reading from that
client; once the client reads again, the pong goes out and reading resumes. Messages of any type
over about `ws_max_frame_bytes` are refused (1009) by the frame parser (uvicorn's `ws_max_size`, set there)
from their header, before their payload is read; text over `ws_max_text_bytes` is refused unparsed by the
stream (app/stream/session.py).

A stream closed for an oversized message (1009) counts as a refusal of its client address in the repeat-offender
cool-down (app/core/offenders.py, which then holds and refuses that address's handshakes for a while): a client
that floods 16 MiB messages and reconnects at once otherwise makes the server accept dozens of streams a second.

`app.core.http.uvicorn_config` (the one uvicorn configuration) serves WebSockets with it.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from app.core.errors import WsClose

PONG = 0x8A  # first byte of a server's (unmasked, final) pong frame


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """WebSocketsSansIOProtocol whose pongs wait for a client that reads (one held at most, reading paused)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_pong: bytes | None = None
        self.paused_for_pongs = False
        self.offended = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        sent = self.conn.close_sent
        if sent is not None and sent.code == WsClose.TOO_BIG and not self.offended:
            self.offended = True
            cool_down = getattr(self.config, "cool_down", None)  # set by app.core.http.uvicorn_config
            client = (getattr(self, "scope", None) or {}).get("client") or self.client
            if cool_down is not None and client:
                cool_down.offend(client[0])

    def handle_ping(self) -> None:
        """Send the pong now if the client reads; else hold only the newest one and stop reading meanwhile."""
        output = self.conn.data_to_send()
        if self.writable.is_set():
            self.transport.write(b"".join(output))
            return
        pongs = [chunk for chunk in output if chunk[:1] == bytes([PONG])]
        self.transport.write(b"".join(chunk for chunk in output if chunk[:1] != bytes([PONG])))
        if pongs:
            self.held_pong = pongs[-1]
        if not self.paused_for_pongs and not self.transport.is_closing():
            self.paused_for_pongs = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.held_pong is not None and not self.transport.is_closing():
            self.transport.write(self.held_pong)
        self.held_pong = None
        if self.paused_for_pongs:
            self.paused_for_pongs = False
            if not self.read_paused and not self.transport.is_closing():  # else the app's next receive resumes
                self.transport.resume_reading()
