"""Alert episodes as Alertmanager v2 alerts: the mapping and the bridge's book of open episodes.

Pure: no HTTP, no Kafka, no clock (``now_ms`` comes in as an argument). The I/O around it is
:mod:`detector.alertmanager.client` (POST /api/v2/alerts) and :mod:`detector.alertmanager.bridge`
(the consumer loop behind ``detector alerts --to-alertmanager URL``).

One episode is one Alertmanager alert. Alertmanager identifies an alert by its label set
(the fingerprint), so the labels are fixed when the bridge first sees an episode and never
change while it lasts:

``alertname``
    ``DetectorAnomaly`` (settable).
``episode_id``
    the episode: what makes the label set one incident's.
``source``, ``model``
    the alert's ``source_id`` and model name.
``severity``
    the severity of the episode's first alert (normally its ``opened`` one). A severity that
    grows during the episode is the ``peak_severity`` annotation: a label that changed would
    make a second Alertmanager alert and leave the first to expire instead of resolving.
plus any static labels of the bridge's settings (``env="prod"``...).

Annotations carry the latest alert: ``summary``, ``description``, ``state``, ``score``,
``peak_score``, ``threshold`` (with ``threshold_method`` and ``target_far``),
``peak_severity``, ``anomalous_windows``, ``input`` (``topic/partition/offset``) and its
parts, ``seq``, event times, ``alert_id``, ``model_version``, ``model_sha256``,
``top_channels`` and, when resolved, ``resolved_reason``. ``generatorURL`` is the bridge's
URL template filled with the input reference, when one is set.

Times are wall-clock: ``startsAt`` is when the detector decided the episode's first alert
(``detected_at_ms``); a firing alert's ``endsAt`` is ``now + expire_after_s`` (re-posted
every ``repost_interval_s``, so it expires only when the bridge stops re-posting it); a
resolved one's ``endsAt`` is when the detector resolved it, but no earlier than
``startsAt + min_firing_s``, so that an episode shorter than Alertmanager's ``group_wait``
still reaches a receiver. Such a resolution is held back until then (:meth:`EpisodeBook.due`)
and posted with an ``endsAt`` in the past: Alertmanager keeps the later of two ``endsAt`` it
is given for an alert that is not yet resolved, so a resolution posted early with a future
``endsAt`` would leave the episode firing until its last firing post expired. Event times
(which may be a replayed file's) are annotations only.

Restarts: :meth:`EpisodeBook.resume_offset` is what the bridge commits per partition: the
offset of the first alert of the oldest episode still open there (else the next offset to
read), with the next offset to read as the commit's metadata. A restarted bridge re-reads
from the committed offset, finds every open episode again with the same labels and start,
and re-posts it; Alertmanager merges alerts of one label set, so posting again what it
already has changes nothing. Below the metadata's offset everything was posted before the
restart, so the later alerts of episodes opened before the committed offset are skipped
(their labels could not be rebuilt: they would make a second, already resolved alert).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from detector.alerts import Alert, AlertState

__all__ = [
    "DEFAULT_ALERTNAME",
    "AlertMapping",
    "EpisodeBook",
    "OpenEpisode",
    "alert_annotations",
    "am_alert",
    "episode_labels",
    "rfc3339",
]

DEFAULT_ALERTNAME = "DetectorAnomaly"
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = frozenset({"alertname", "episode_id", "source", "model", "severity"})


class AlertMapping(BaseModel):
    """How episodes become Alertmanager alerts (the bridge's settings that shape payloads).

    Attributes:
        alertname: the ``alertname`` label.
        labels: static labels added to every alert (not the reserved names).
        expire_after_s: a firing alert's ``endsAt`` is this far after its last post.
        min_firing_s: a resolved episode's ``endsAt`` is at least this long after its start.
        stale_after_s: an open episode with no alert for this long (wall clock) is no
            longer re-posted, so Alertmanager lets it expire (0: never).
        generator_url: template of ``generatorURL`` with ``{topic}``, ``{partition}``,
            ``{offset}``, ``{source}``, ``{episode_id}``; empty: none.
    """

    model_config = ConfigDict(extra="forbid")

    alertname: str = Field(DEFAULT_ALERTNAME, min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    expire_after_s: float = Field(300.0, gt=0)
    min_firing_s: float = Field(60.0, ge=0)
    stale_after_s: float = Field(3600.0, ge=0)
    generator_url: str = ""

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.match(name):
                raise ValueError(f"label name {name!r} is not a Prometheus label name")
            if name in _RESERVED:
                raise ValueError(f"label {name!r} is set by the bridge itself")
        return value

    @model_validator(mode="after")
    def _template(self) -> AlertMapping:
        if self.generator_url:
            try:
                self.generator_url.format(
                    topic="t", partition=0, offset=0, source="s", episode_id="e"
                )
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    "generator_url: only {topic}, {partition}, {offset}, {source} and "
                    f"{{episode_id}} may be used ({exc})"
                ) from None
        return self


def rfc3339(ms: int) -> str:
    """Milliseconds since the epoch as the RFC 3339 time Alertmanager's API takes.

    >>> rfc3339(1_700_000_000_123)
    '2023-11-14T22:13:20.123Z'
    """
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _num(x: float) -> str:
    return f"{x:.6g}"


def episode_labels(alert: Alert, mapping: AlertMapping) -> dict[str, str]:
    """The label set (fingerprint) of the episode ``alert`` belongs to, from this alert."""
    return {
        **mapping.labels,
        "alertname": mapping.alertname,
        "episode_id": alert.episode_id,
        "source": alert.source_id,
        "model": alert.model.name,
        "severity": alert.severity.value,
    }


def alert_annotations(alert: Alert) -> dict[str, str]:
    """What Alertmanager's receivers show: the latest alert of the episode."""
    ref = alert.input
    ratio = alert.peak_score / alert.threshold.value if alert.threshold.value > 0 else float("inf")
    out = {
        "summary": (
            f"Anomaly on {alert.source_id}: score {_num(alert.peak_score)} peaked at "
            f"{ratio:.1f}x the threshold ({alert.severity.value})"
        ),
        "description": (
            f"Episode {alert.episode_id} of source {alert.source_id} is {alert.state.value}: "
            f"{alert.anomalous_windows} anomalous windows, latest score {_num(alert.score)} "
            f"against threshold {_num(alert.threshold.value)} ({alert.threshold.method}, "
            f"target false-alarm rate {alert.threshold.target_far:g}). Input record "
            f"{ref.topic}/{ref.partition}/{ref.offset}."
        ),
        "state": alert.state.value,
        "score": _num(alert.score),
        "peak_score": _num(alert.peak_score),
        "threshold": _num(alert.threshold.value),
        "threshold_method": alert.threshold.method,
        "target_far": f"{alert.threshold.target_far:g}",
        "peak_severity": alert.severity.value,
        "anomalous_windows": str(alert.anomalous_windows),
        "input": f"{ref.topic}/{ref.partition}/{ref.offset}",
        "input_topic": ref.topic,
        "input_partition": str(ref.partition),
        "input_offset": str(ref.offset),
        "seq": str(ref.seq),
        "event_time": rfc3339(alert.event_time_ms),
        "episode_started": rfc3339(alert.episode_started_ms),
        "alert_id": alert.alert_id,
        "model_version": alert.model.version,
        "model_sha256": alert.model.sha256,
    }
    if alert.top_channels:
        out["top_channels"] = ", ".join(
            f"{c.channel} {_num(c.error)}" for c in alert.top_channels[:3]
        )
    if alert.resolved_reason:
        out["resolved_reason"] = alert.resolved_reason
    return out


def am_alert(
    alert: Alert,
    labels: Mapping[str, str],
    starts_ms: int,
    now_ms: int,
    mapping: AlertMapping,
) -> dict[str, Any]:
    """One element of the JSON array POSTed to ``/api/v2/alerts``.

    Args:
        alert: the episode's latest alert (its state decides firing or resolved).
        labels: the episode's label set (:func:`episode_labels` of its first alert).
        starts_ms: when the episode's first alert was decided (wall clock).
        now_ms: wall clock now.
        mapping: the bridge's settings.
    """
    starts = min(starts_ms, now_ms)
    if alert.state is AlertState.RESOLVED:
        ends = max(min(alert.detected_at_ms, now_ms), starts + int(mapping.min_firing_s * 1000))
    else:
        ends = now_ms + int(mapping.expire_after_s * 1000)
    out: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": alert_annotations(alert),
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(max(ends, starts)),
    }
    if mapping.generator_url:
        ref = alert.input
        out["generatorURL"] = mapping.generator_url.format(
            topic=ref.topic,
            partition=ref.partition,
            offset=ref.offset,
            source=alert.source_id,
            episode_id=alert.episode_id,
        )
    return out


@dataclass
class OpenEpisode:
    """An episode the bridge has seen open and not resolved.

    Attributes:
        labels: its label set, fixed at its first alert.
        starts_ms: its first alert's ``detected_at_ms``.
        latest: its latest alert.
        partition: the alerts-topic partition its alerts arrive on (keyed by source).
        first_offset: the offset of its first alert there: where a restart re-reads from.
        resolved: its resolved alert, while the resolution waits for ``min_firing_s``.
    """

    labels: dict[str, str]
    starts_ms: int
    latest: Alert
    partition: int
    first_offset: int
    resolved: Alert | None = None

    def resolves_at_ms(self, mapping: AlertMapping) -> int:
        """When its resolution may be posted: ``min_firing_s`` after its start."""
        return self.starts_ms + int(mapping.min_firing_s * 1000)


@dataclass
class EpisodeBook:
    """Open episodes (re-posted while they last) and what to commit per partition.

    Verbs: :meth:`apply` an alert read from Kafka (the payload to post for it), :meth:`due`
    (resolutions held back until the episode has fired ``min_firing_s``), :meth:`firing`
    (payloads re-posting every open episode), :meth:`drop_stale`, :meth:`resume_offset`
    (what to commit), :meth:`forget_partitions` (after a rebalance took them).
    """

    mapping: AlertMapping
    episodes: dict[str, OpenEpisode] = field(default_factory=dict)

    def apply(
        self, alert: Alert, partition: int, offset: int, now_ms: int, replayed: bool = False
    ) -> dict[str, Any] | None:
        """Take in one alert read at ``partition``/``offset``; the payload to post for it.

        Args:
            replayed: the alert was read again after a restart, below the offset read up to
                at the last commit (so it was posted then). An ``ongoing`` or ``resolved``
                alert of an episode not in the book is then skipped (None): its episode was
                opened before the committed offset and closed before the commit, and its
                labels cannot be rebuilt without its first alert.
        """
        ep = self.episodes.get(alert.episode_id)
        if ep is None and replayed and alert.state is not AlertState.OPENED:
            return None
        if ep is None:
            labels = episode_labels(alert, self.mapping)
            starts = alert.detected_at_ms
            if alert.state is not AlertState.RESOLVED:
                self.episodes[alert.episode_id] = OpenEpisode(
                    labels, starts, alert, partition, offset
                )
        else:
            labels, starts = ep.labels, ep.starts_ms
            if alert.state is AlertState.RESOLVED:
                if ep.resolves_at_ms(self.mapping) > now_ms:
                    ep.resolved = alert  # posted by due() once it has fired long enough
                    return None
                del self.episodes[alert.episode_id]
            else:
                ep.latest = alert
        return am_alert(alert, labels, starts, now_ms, self.mapping)

    def due(self, now_ms: int) -> list[tuple[int, dict[str, Any]]]:
        """(partition, payload) of the held-back resolutions now due; they leave the book."""
        out = []
        for ep in list(self.episodes.values()):
            if ep.resolved is not None and ep.resolves_at_ms(self.mapping) <= now_ms:
                del self.episodes[ep.latest.episode_id]
                payload = am_alert(ep.resolved, ep.labels, ep.starts_ms, now_ms, self.mapping)
                out.append((ep.partition, payload))
        return out

    def firing(self, now_ms: int) -> list[dict[str, Any]]:
        """Payloads re-posting every open episode (their ``endsAt`` moved on)."""
        return [
            am_alert(ep.latest, ep.labels, ep.starts_ms, now_ms, self.mapping)
            for ep in self.episodes.values()
            if ep.resolved is None
        ]

    def drop_stale(self, now_ms: int) -> list[OpenEpisode]:
        """Forget open episodes with no alert for ``stale_after_s``; returns them."""
        if self.mapping.stale_after_s <= 0:
            return []
        limit = now_ms - int(self.mapping.stale_after_s * 1000)
        stale = [
            ep
            for ep in self.episodes.values()
            if ep.resolved is None and ep.latest.detected_at_ms < limit
        ]
        for ep in stale:
            del self.episodes[ep.latest.episode_id]
        return stale

    def resume_offset(self, partition: int, next_offset: int) -> int:
        """The offset to commit for ``partition``: its oldest open episode's first alert,
        else ``next_offset`` (everything before it is posted and needs no re-reading)."""
        firsts = [ep.first_offset for ep in self.episodes.values() if ep.partition == partition]
        return min([next_offset, *firsts])

    def forget_partitions(self, partitions: Iterable[int]) -> int:
        """Drop the episodes of partitions this bridge no longer owns; returns how many."""
        gone = set(partitions)
        ids = [k for k, ep in self.episodes.items() if ep.partition in gone]
        for k in ids:
            del self.episodes[k]
        return len(ids)
