"""Alert lifecycle: consecutive anomalous windows of one source form one episode.

An episode opens on the first anomalous window (one ``opened`` alert), sends at most one
``ongoing`` update per ``ongoing_interval_s`` of event time carrying the peak score, and is
``resolved`` after ``resolve_after_windows`` consecutive normal windows, after
``resolve_after_s`` of event time with no anomalous window, or when the source falls silent
for that long (wall clock, checked by :meth:`EpisodeTracker.sweep_idle`).

An episode still open after ``shift_after_windows`` windows is a *sustained shift*: it is
resolved with ``Transition.shift`` set, and the caller lets the thresholds learn its windows
as the new normal. Without that rule an episode that never ends (a level that moved for good)
would keep the thresholds frozen for ever while every window is flagged.

Decisions use event time, not the wall clock, so replaying the same records gives the same
alerts: what exactly-once needs after a crash.

Examples:
    >>> t = EpisodeTracker(LifecycleSettings(resolve_after_windows=2))
    >>> steps = [(True, 0), (True, 1), (False, 2), (False, 3)]
    >>> [getattr(t.observe("s", f, 1.0, ms, "ep-1"), "state", None) for f, ms in steps]
    [<AlertState.OPENED: 'opened'>, None, None, <AlertState.RESOLVED: 'resolved'>]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field

from detector.alerts import AlertState

__all__ = ["Episode", "EpisodeTracker", "LifecycleSettings", "Transition"]


class LifecycleSettings(BaseModel):
    """How anomalous windows of one source become one alert episode."""

    model_config = ConfigDict(extra="forbid")

    ongoing_interval_s: float = Field(
        30.0, gt=0, description="At most one 'ongoing' update per episode per this much event time."
    )
    resolve_after_windows: int = Field(
        5, ge=1, description="Consecutive normal windows that resolve an episode."
    )
    resolve_after_s: float = Field(
        300.0, gt=0, description="Event time without an anomalous window that resolves it."
    )
    top_k: int = Field(5, ge=1, le=50, description="Contributing steps/channels in an alert.")
    shift_after_windows: int = Field(
        300,
        ge=0,
        description="An episode still open after this many windows is a sustained shift, not "
        "an incident: it is resolved with that reason, a 'shift_accepted' event is published, "
        "and its windows are learnt as the source's new normal (the threshold follows). "
        "Incidents longer than this are reported for this long, then absorbed. 0: never (the "
        "threshold stays frozen for as long as the episode lasts; not recommended).",
    )


@dataclass(slots=True)
class Episode:
    """One open episode of one source."""

    episode_id: str
    started_ms: int
    peak_score: float
    anomalous_windows: int
    last_anomalous_ms: int
    last_update_ms: int
    last_seen_ms: int
    normal_streak: int = 0
    last_arrival_ms: int = 0  # wall clock of the last window, for the idle sweep
    windows: int = 1  # windows seen since it opened, the opening one included


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert to publish: the state and the episode as it stands after this window."""

    state: AlertState
    episode: Episode
    reason: str | None = None
    shift: bool = False  # resolved as a sustained shift (see the module docstring)


class EpisodeTracker:
    """Open episodes per source, with the rules in the module docstring."""

    def __init__(self, settings: LifecycleSettings) -> None:
        self._settings = settings
        self._ongoing_ms = int(settings.ongoing_interval_s * 1000)
        self._resolve_ms = int(settings.resolve_after_s * 1000)
        self._open: dict[str, Episode] = {}

    def is_open(self, source_id: str) -> bool:
        """True while ``source_id`` has an open episode."""
        return source_id in self._open

    def episode_id(self, source_id: str) -> str | None:
        """The id of ``source_id``'s open episode, or None."""
        ep = self._open.get(source_id)
        return None if ep is None else ep.episode_id

    def open_count(self) -> int:
        """How many sources have an open episode."""
        return len(self._open)

    def observe(
        self,
        source_id: str,
        flagged: bool,
        score: float,
        event_time_ms: int,
        episode_id: str,
        arrival_ms: int | None = None,
    ) -> Transition | None:
        """Feed one scored window (in stream order); return the alert to publish, if any.

        Args:
            source_id: the window's source.
            flagged: score above the threshold in force.
            score: the window's anomaly score.
            event_time_ms: the window's event time.
            episode_id: the id to give an episode this window opens.
            arrival_ms: wall-clock time the window was processed (default: its event time);
                only the idle sweep uses it, so replays of old data are not 'silent'.
        """
        arrival = event_time_ms if arrival_ms is None else arrival_ms
        ep = self._open.get(source_id)
        if ep is None:
            if not flagged:
                return None
            ep = Episode(
                episode_id=episode_id,
                started_ms=event_time_ms,
                peak_score=score,
                anomalous_windows=1,
                last_anomalous_ms=event_time_ms,
                last_update_ms=event_time_ms,
                last_seen_ms=event_time_ms,
                last_arrival_ms=arrival,
            )
            self._open[source_id] = ep
            return Transition(AlertState.OPENED, ep)
        ep.last_seen_ms = max(ep.last_seen_ms, event_time_ms)
        ep.last_arrival_ms = max(ep.last_arrival_ms, arrival)
        ep.windows += 1
        if flagged:
            ep.anomalous_windows += 1
            ep.peak_score = max(ep.peak_score, score)
            ep.last_anomalous_ms = max(ep.last_anomalous_ms, event_time_ms)
            ep.normal_streak = 0
        else:
            ep.normal_streak += 1
            if ep.normal_streak >= self._settings.resolve_after_windows:
                del self._open[source_id]
                return Transition(
                    AlertState.RESOLVED, ep, f"{ep.normal_streak} consecutive normal windows"
                )
            if event_time_ms - ep.last_anomalous_ms >= self._resolve_ms:
                del self._open[source_id]
                return Transition(
                    AlertState.RESOLVED,
                    ep,
                    f"no anomalous window for {self._settings.resolve_after_s:g} s",
                )
        shift_after = self._settings.shift_after_windows
        if shift_after and ep.windows >= shift_after:
            del self._open[source_id]
            return Transition(
                AlertState.RESOLVED,
                ep,
                f"sustained shift: still open after {ep.windows} windows "
                f"(shift_after_windows={shift_after}); accepted as the new normal",
                shift=True,
            )
        if flagged and event_time_ms - ep.last_update_ms >= self._ongoing_ms:
            ep.last_update_ms = event_time_ms
            return Transition(AlertState.ONGOING, ep)
        return None

    def sweep_idle(self, now_ms: int) -> list[tuple[str, Transition]]:
        """Resolve episodes of sources with no window for ``resolve_after_s`` of wall clock."""
        out = []
        for source_id, ep in list(self._open.items()):
            if now_ms - ep.last_arrival_ms >= self._resolve_ms:
                del self._open[source_id]
                reason = f"source silent for {self._settings.resolve_after_s:g} s"
                out.append((source_id, Transition(AlertState.RESOLVED, ep, reason)))
        return out

    def snapshot(self, source_id: str) -> dict[str, int | float | str] | None:
        """The open episode of ``source_id`` as plain data, or None."""
        ep = self._open.get(source_id)
        return asdict(ep) if ep is not None else None

    def restore(self, source_id: str, data: dict[str, int | float | str] | None) -> None:
        """Put back an episode from :meth:`snapshot` (None means no open episode)."""
        if data is None:
            self._open.pop(source_id, None)
            return
        self._open[source_id] = Episode(**data)  # type: ignore[arg-type]

    def drop(self, source_ids: list[str] | set[str]) -> None:
        """Forget these sources (their partitions moved to another instance)."""
        for source_id in source_ids:
            self._open.pop(source_id, None)
