"""Logging that a stranger can neither stall nor flood: the event loop never waits on a log write, and the lines a
client can cause per connection (a malformed request, a refused handshake) are throttled.

Without this, every malformed request made uvicorn write a warning to stderr from the event loop; when whatever
reads stderr fell behind (a pipe nobody drained, a slow log shipper), the write blocked and the whole server
stalled with it: connections still accepted by the kernel, nothing answered. Now the server's stream handlers
sit behind a bounded queue drained by one thread (a record that finds the queue full is dropped and counted), and
`Throttle` passes at most `burst` lines of one message template per `window_s`, then says how many it dropped.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time

# loggers whose stream handlers move behind the queue; "" is the root (`lgm-pose serve`'s basicConfig)
SERVER_LOGGERS = ("", "uvicorn", "uvicorn.access")
_lock = threading.Lock()


class LogWriter(threading.Thread):
    """The one thread that writes the server's log lines: (handlers, record) pairs from a bounded queue."""

    def __init__(self, capacity: int) -> None:
        super().__init__(name="log-writer", daemon=True)
        self.queue: queue.Queue[tuple[tuple[logging.Handler, ...], logging.LogRecord]] = queue.Queue(capacity)
        self.dropped = 0

    def run(self) -> None:
        while True:
            handlers, record = self.queue.get()
            for handler in handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
            self.queue.task_done()

    def drain(self, timeout_s: float = 2.0) -> None:
        """Wait (at most `timeout_s`) until the queued lines are written: at exit, so the last lines are not lost."""
        deadline = time.monotonic() + timeout_s
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


class Deferred(logging.Handler):
    """Hands records to the `LogWriter` for `targets` without waiting: a record that finds its queue full is
    dropped (and counted)."""

    def __init__(self, writer: LogWriter, targets: list[logging.Handler]) -> None:
        super().__init__()
        self.writer, self.targets = writer, tuple(targets)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.queue.put_nowait((self.targets, record))
        except queue.Full:
            self.writer.dropped += 1


_writer: LogWriter | None = None


class Throttle(logging.Filter):
    """Passes at most `burst` records of one message template per `window_s`; the first one after a window that
    dropped some says how many. Memory: at most `max_templates` templates (templates are code, not client data)."""

    def __init__(self, burst: int = 10, window_s: float = 10.0, max_templates: int = 256) -> None:
        super().__init__()
        self.burst, self.window_s, self.max_templates = burst, window_s, max_templates
        self.windows: dict[str, list[float]] = {}  # template -> [window start, passed, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        now, key = time.monotonic(), str(record.msg)
        window = self.windows.get(key)
        if window is None or now - window[0] >= self.window_s:
            dropped = int(window[2]) if window else 0
            if window is None and len(self.windows) >= self.max_templates:
                self.windows.clear()
            self.windows[key] = [now, 1, 0]
            if dropped:
                record.msg = f"{record.msg} [{dropped} similar lines dropped in the last {self.window_s:.0f} s]"
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        return False


def _stream_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The plain stream handlers of `logger` (not a test framework's capturing handlers, which are subclasses)."""
    return [h for h in logger.handlers if type(h) is logging.StreamHandler]


def guard_server_logs(capacity: int = 10000) -> LogWriter:
    """Put the server loggers' stream handlers behind the writer thread (started once per process) and throttle
    uvicorn's per-connection lines; idempotent, and again after uvicorn re-configures its loggers."""
    global _writer
    with _lock:
        if _writer is None:
            _writer = LogWriter(capacity)
            _writer.start()
            atexit.register(_writer.drain)
        for name in SERVER_LOGGERS:
            logger = logging.getLogger(name)
            targets = _stream_handlers(logger)
            if targets:
                for handler in targets:
                    logger.removeHandler(handler)
                logger.addHandler(Deferred(_writer, targets))
        error_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, Throttle) for f in error_log.filters):
            error_log.addFilter(Throttle())
        return _writer
