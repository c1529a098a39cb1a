"""The MQTT sink's delivery bookkeeping: which windows are on the wire and what may go next.

The rules that make store-and-forward correct live here, apart from paho, threads and clocks, so
they can be tested by feeding events and times in:

* windows leave in ``seq`` order with at most ``max_inflight`` unconfirmed, and after a reconnect
  nothing new is sent until paho's own re-sends of the old connection's windows are acknowledged
  (sending newer windows first could reorder them on the wire);
* a window the broker refuses is held: later windows wait behind it and it is offered again,
  alone, every ``refused_retry_s`` and at once on every new connection;
* over MQTT 3.1.1 with read-back (a broker there acknowledges a publish its ACL drops) a window
  counts as delivered only when it comes back on the device's own subscription within
  ``echo_timeout_s``; one that does not is refused.

``edge.sinks.mqtt_drain`` owns the one ``Delivery`` of a sink and is the only thread that calls
it; it does what the answers say (publish, acknowledge in the spool, log).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class DeliveryTiming:
    """How the sink paces itself: not config keys (the defaults suit a device), but tests shorten them."""

    reconnect_min_s: float = 1.0  # paho's reconnect backoff, first step
    reconnect_max_s: float = 120.0  # ... and its ceiling
    max_inflight: int = 10  # windows sent but not yet confirmed
    close_timeout_s: float = 5.0  # on close: wait this long for in-flight windows and `offline`
    refused_retry_s: float = 60.0  # a window the broker refused is offered again this often
    echo_timeout_s: float = 30.0  # MQTT 3.1.1 read-back: an acknowledged window must come back within this


@dataclass(frozen=True)
class RefusedWindow:
    """The window the broker refuses right now; later windows wait behind it."""

    seq: int
    reason: str
    since: float  # wall clock of the first refusal


class Delivery:
    """What is in flight, what awaits its read-back, and whether a refused window holds the rest.

    Times are passed in: ``now`` is monotonic seconds, ``wall`` is ``time.time()`` (only kept to
    report since when a window is refused).
    """

    def __init__(self, timing: DeliveryTiming, *, read_back: bool) -> None:
        self._max_inflight = timing.max_inflight
        self.refused_retry_s = timing.refused_retry_s
        self.echo_timeout_s = timing.echo_timeout_s
        self.read_back = read_back  # MQTT 3.1.1: delivered when read back (off once the broker denies it)
        self.connected = False
        self._inflight: dict[int, int] = {}  # mid -> seq, awaiting PUBACK, in send order
        self._barrier: set[int] = set()  # mids paho re-sends itself after a reconnect
        self._awaiting: dict[int, float] = {}  # read-back: seq -> deadline for its echo
        self._echoed: set[int] = set()  # echoes that overtook their PUBACK
        self._retry_at = 0.0  # when the refused window may be offered again
        self.refused = 0  # refusals so far (counted per attempt)
        self.refused_window: RefusedWindow | None = None

    # ----------------------------------------------------------------- the link

    def link_up(self) -> None:
        """A new connection: paho re-sends what is in flight; the refused window may go at once."""
        self.connected = True
        self._barrier = set(self._inflight)
        self._retry_at = 0.0

    def link_down(self) -> None:
        """The connection ended: echoes awaited on it may be lost with it, so those windows go again."""
        self.connected = False
        self._awaiting.clear()

    # ----------------------------------------------------------------- sending

    def room(self, now: float) -> int:
        """How many new windows may be sent now (oldest first, skipping ``outstanding``)."""
        if not self.connected or self._barrier:
            return 0
        if self.refused_window is not None:
            # Only the oldest window, and only when its retry is due and nothing else is out.
            return 0 if self._inflight or self._awaiting or now < self._retry_at else 1
        return max(0, self._max_inflight - len(self._inflight) - len(self._awaiting))

    def outstanding(self) -> set[int]:
        """Seqs sent and not yet confirmed or refused (not to be sent again on this connection)."""
        return set(self._inflight.values()) | set(self._awaiting)

    def sent(self, mid: int, seq: int) -> None:
        """Window ``seq`` went out (or was queued by paho) as message ``mid``."""
        self._inflight[mid] = seq

    @property
    def in_flight(self) -> int:
        """Windows sent and not yet confirmed (PUBACK or read-back)."""
        return len(self._inflight) + len(self._awaiting)

    # ----------------------------------------------------------------- what the broker says

    def acked(self, mid: int, now: float) -> int | None:
        """A successful PUBACK: the seq now delivered, or None (not a window of this connection's
        bookkeeping -- status, discovery, health -- or a window that must still be read back)."""
        self._barrier.discard(mid)
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return None
        if self.read_back and seq not in self._echoed:
            self._awaiting[seq] = now + self.echo_timeout_s
            return None
        self._echoed.discard(seq)
        return seq

    def rejected(self, mid: int) -> int | None:
        """A PUBACK with a failure reason: the seq to ``refuse``, or None when it was not a window."""
        self._barrier.discard(mid)
        return self._inflight.pop(mid, None)

    def echoed(self, seq: int) -> bool:
        """Window ``seq`` came back on the device's subscription; True when that delivers it."""
        if seq in self._awaiting:
            del self._awaiting[seq]
            return True
        if seq in self._inflight.values():
            self._echoed.add(seq)  # came back before its PUBACK was handled
        return False

    def read_back_denied(self) -> list[int]:
        """The broker will not let the device read its windows back: trust acknowledgements from
        now on. Returns the seqs that were awaiting their echo (delivered now)."""
        self.read_back = False
        seqs = list(self._awaiting)
        self._awaiting.clear()
        return seqs

    def overdue(self, now: float) -> list[int]:
        """Acknowledged windows whose echo did not come back in time (to ``refuse``)."""
        late = [seq for seq, deadline in self._awaiting.items() if now >= deadline]
        for seq in late:
            del self._awaiting[seq]
        return late

    # ----------------------------------------------------------------- refusals

    def refuse(self, seq: int, reason: str, now: float, wall: float) -> bool:
        """Hold ``seq`` back and offer it again later; True when it is newly the held window
        (worth an error in the log), False when it (or an older one) was already held."""
        self.refused += 1
        self._retry_at = now + self.refused_retry_s
        held = self.refused_window
        if held is not None and held.seq <= seq:
            return False
        self.refused_window = RefusedWindow(seq=seq, reason=reason, since=wall)
        return True

    def accepted(self, seq: int, oldest_pending: Callable[[], int | None]) -> RefusedWindow | None:
        """Window ``seq`` was delivered and removed from the spool. Returns the refusal this ends,
        if any: the held window itself got through, or a later one did and the spool (asked through
        ``oldest_pending``, the oldest seq still spooled) no longer holds the refused one."""
        held = self.refused_window
        if held is None:
            return None
        if seq != held.seq:
            oldest = oldest_pending()
            if oldest is not None and oldest <= held.seq:
                return None
        self.refused_window = None
        return held
