"""Two threads around a loop: one reads ahead, one writes behind, in order, errors passed on.

``rfcore detect VIDEO`` decodes, detects, draws and encodes each frame.
Decoding, drawing and encoding are OpenCV calls and detection is PyTorch (or
onnxruntime); all release Python's global lock while they work, so they can
overlap on different cores:

* :class:`ReadAhead` runs an iterator (the decoder) in a thread and hands
  its items to the loop through a bounded queue;
* :class:`WriteBehind` takes items from the loop through a bounded queue
  and calls a function (drawing and encoding) on each in a thread.

One thread on each side and first-in-first-out queues keep the order. The
queues are bounded (:data:`QUEUE_SIZE`), so a slow loop holds only a few
decoded frames in memory. An exception in a thread is raised again in the
loop's thread: by :class:`ReadAhead` at the item where it happened, by
:class:`WriteBehind` at the next :meth:`~WriteBehind.put` or when the block
ends. Both are context managers that stop and join their thread on the way
out, so nothing runs on after an error.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

QUEUE_SIZE = 8
"""Items a queue holds: a few frames of look-ahead, 7 MB at 640x480."""

_END = object()
"""Queue message: no more items."""


class ReadAhead:
    """Iterate ``items`` in a thread, up to ``size`` items ahead of the consumer.

    Args:
        items: Any iterable; its ``next()`` runs in the thread.
        size: Most items waiting in the queue.

    Iterating the object yields the items in order and raises whatever the
    iterable raised, where it raised it.
    """

    def __init__(self, items: Iterable, size: int = QUEUE_SIZE) -> None:
        self.queue: queue.Queue = queue.Queue(size)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._fill, args=(iter(items),), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()  # a reader blocked on a full queue gives up within its timeout
        self.thread.join()

    def _fill(self, iterator: Iterator) -> None:
        try:
            for item in iterator:
                if not self._put((item, None)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put((None, err))
            return
        self._put((_END, None))

    def _put(self, message: tuple) -> bool:
        """Queue ``message``, waiting while the queue is full; False if stopped meanwhile."""
        while not self.stopped.is_set():
            try:
                self.queue.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator:
        while True:
            item, error = self.queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item


class WriteBehind:
    """Call ``consume(item)`` in a thread for each item :meth:`put`, in order, at most ``size`` waiting.

    Args:
        consume: The function run on each item (e.g. writing a frame).
        size: Most items waiting in the queue.

    The block ends after every item has been consumed; if ``consume``
    raised, the first exception is raised there (or at the next
    :meth:`put`), and later items are dropped.
    """

    def __init__(self, consume: Callable[[object], None], size: int = QUEUE_SIZE) -> None:
        self.consume = consume
        self.queue: queue.Queue = queue.Queue(size)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.queue.put(_END)  # never blocks for long: the thread keeps taking items, even after an error
        self.thread.join()
        if exc_type is None:
            self._raise_error()

    def _drain(self) -> None:
        while (item := self.queue.get()) is not _END:
            if self.error is None:
                try:
                    self.consume(item)
                except BaseException as err:  # noqa: BLE001 - raised again in the producer's thread
                    self.error = err

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, item) -> None:
        """Queue ``item`` for ``consume``, waiting while the queue is full; raises an earlier error of ``consume``."""
        self._raise_error()
        self.queue.put(item)
