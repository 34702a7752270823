"""Prometheus metrics, read from the database at scrape time (every host and process shares it,
so nothing is counted in memory). Exposed by prometheus-client, never hand-formatted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from ..models import Backup, Incident, Job, ModuleState, ScanHost


class DashboardCollector(Collector):
    def collect(self) -> Iterator:
        yield from _modules()
        yield from _incidents()
        yield from _backups()
        yield from _hosts()
        yield from _jobs()


def _modules() -> Iterator:
    modules = GaugeMetricFamily("opsdash_modules", "Modules per status", labels=["host", "branch", "status"])
    for row in ModuleState.objects.values("host", "branch", "status").annotate(n=Count("id")).order_by():
        modules.add_metric([row["host"], row["branch"], row["status"]], row["n"])
    yield modules
    findings = GaugeMetricFamily("opsdash_findings", "Modules that currently have a finding", labels=["host", "code", "severity"])
    counts: Counter = Counter()
    for host, found in ModuleState.objects.exclude(codes="").values_list("host", "findings").iterator(chunk_size=2000):
        for f in {(f.get("code"), f.get("severity")) for f in found if isinstance(f, dict)}:
            counts[(host, *f)] += 1
    for (host, code, severity), n in sorted(counts.items()):
        findings.add_metric([host, str(code), str(severity)], n)
    yield findings


def _incidents() -> Iterator:
    opened = CounterMetricFamily("opsdash_incidents_opened", "Incidents ever recorded", labels=["source"])
    for row in Incident.objects.values("source").annotate(n=Count("id")).order_by():
        opened.add_metric([row["source"]], row["n"])
    yield opened
    ended = CounterMetricFamily("opsdash_incidents_ended", "Incidents that ended, by how", labels=["how"])
    for row in Incident.objects.filter(ended_at__isnull=False).values("ended_how").annotate(n=Count("id")).order_by():
        ended.add_metric([row["ended_how"] or "unknown"], row["n"])
    yield ended
    open_ = GaugeMetricFamily("opsdash_incidents_open", "Incidents still open", labels=["host"])
    for row in Incident.objects.filter(ended_at__isnull=True).values("module__host").annotate(n=Count("id")).order_by():
        open_.add_metric([row["module__host"]], row["n"])
    yield open_


def _backups() -> Iterator:
    backups = GaugeMetricFamily("opsdash_backups", "Backups by state", labels=["host", "state"])
    for row in Backup.objects.values("module__host", "state").annotate(n=Count("id")).order_by():
        backups.add_metric([row["module__host"], row["state"]], row["n"])
    yield backups


def _hosts() -> Iterator:
    now = timezone.now()
    age = GaugeMetricFamily("opsdash_host_last_scan_age_seconds", "Seconds since the host's last scan pass", labels=["host"])
    stamp = GaugeMetricFamily("opsdash_host_last_scan_timestamp_seconds", "Time of the host's last scan pass", labels=["host"])
    for host, at in ScanHost.objects.values_list("host", "last_pass_at"):
        age.add_metric([host], max(0.0, (now - at).total_seconds()))
        stamp.add_metric([host], at.timestamp())
    yield age
    yield stamp


def _jobs() -> Iterator:
    jobs = GaugeMetricFamily("opsdash_jobs", "Jobs by kind and status", labels=["kind", "status"])
    for row in Job.objects.values("kind", "status").annotate(n=Count("id")).order_by():
        jobs.add_metric([row["kind"], row["status"]], row["n"])
    yield jobs
    durations = SummaryMetricFamily("opsdash_job_duration_seconds", "Duration of finished jobs", labels=["kind"])
    finished = Job.objects.filter(finished_at__isnull=False, started_at__isnull=False)
    for kind in finished.values_list("kind", flat=True).distinct().order_by():
        rows = finished.filter(kind=kind)
        total = sum(((j.finished_at - j.started_at).total_seconds() for j in rows.only("started_at", "finished_at").iterator()), 0.0)
        durations.add_metric([kind], count_value=rows.count(), sum_value=total)
    yield durations
