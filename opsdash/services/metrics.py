"""Prometheus metrics, read from the database at scrape time (every host and process shares it,
so nothing is counted in memory). Exposed by prometheus-client, never hand-formatted.

Every family is one aggregate query (``values().annotate()``): a scrape costs the same handful of
queries for 10 modules or 10,000.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from eventstore.health import CODES, SEVERITIES, STATUS_FOR_SEVERITY

from ..models import Backup, Incident, Job, ModuleState, ScanHost, Status

# Upper bounds (seconds) of the job duration histogram: a verify takes seconds, a rebuild of a
# large log minutes.
JOB_DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600)
_SEVERITY_OF_STATUS = {status: severity for severity, status in STATUS_FOR_SEVERITY.items()}


class DashboardCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from _modules()
        yield from _incidents()
        yield from _backups()
        yield from _hosts()
        yield from _jobs()


def _modules() -> Iterator[Metric]:
    modules = GaugeMetricFamily("opsdash_modules", "Modules per status", labels=["host", "branch", "status"])
    for row in ModuleState.objects.values("host", "branch", "status").annotate(n=Count("id")).order_by():
        modules.add_metric([row["host"], row["branch"], row["status"]], row["n"])
    yield modules
    findings = GaugeMetricFamily(
        "opsdash_findings", "Modules that currently have a finding", labels=["host", "code", "severity"]
    )
    for (host, code, severity), n in sorted(_finding_counts().items()):
        findings.add_metric([host, code, severity], n)
    yield findings
    verified = GaugeMetricFamily(
        "opsdash_module_verified_timestamp_seconds",
        "When the module's log was last read in full (a first read, the scrub, Verify)",
        labels=["host", "branch", "module"],
    )
    rows = ModuleState.objects.exclude(status=Status.GONE).filter(verified_at__isnull=False)
    for host, branch, module, at in rows.values_list("host", "branch", "module", "verified_at").order_by():
        verified.add_metric([host, branch, module], at.timestamp())
    yield verified


def _finding_counts() -> Counter[tuple[str, str, str]]:
    """Modules per (host, code, severity), from one query grouped by the modules' code sets.

    A finding's severity is its code's severity in the health vocabulary, capped by the module's
    status (a module's status is its worst severity, so a "meta_invalid" on a warning module is
    a warning). A module that is gone has no current findings.
    """
    counts: Counter[tuple[str, str, str]] = Counter()
    current = ModuleState.objects.exclude(codes="").exclude(status=Status.GONE)
    groups = current.values("host", "status", "codes").annotate(n=Count("id")).order_by()
    for row in groups:
        cap = SEVERITIES.index(_SEVERITY_OF_STATUS.get(row["status"], "critical"))
        for code in row["codes"].split():
            default = CODES[code][0] if code in CODES else "critical"
            counts[(row["host"], code, SEVERITIES[min(SEVERITIES.index(default), cap)])] += row["n"]
    return counts


def _incidents() -> Iterator[Metric]:
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


def _backups() -> Iterator[Metric]:
    backups = GaugeMetricFamily("opsdash_backups", "Backups by state", labels=["host", "state"])
    for row in Backup.objects.values("module__host", "state").annotate(n=Count("id")).order_by():
        backups.add_metric([row["module__host"], row["state"]], row["n"])
    yield backups


def _hosts() -> Iterator[Metric]:
    now = timezone.now()
    age = GaugeMetricFamily(
        "opsdash_host_last_scan_age_seconds", "Seconds since the host's last scan pass", labels=["host"]
    )
    stamp = GaugeMetricFamily(
        "opsdash_host_last_scan_timestamp_seconds", "Time of the host's last scan pass", labels=["host"]
    )
    for host, at in ScanHost.objects.values_list("host", "last_pass_at"):
        age.add_metric([host], max(0.0, (now - at).total_seconds()))
        stamp.add_metric([host], at.timestamp())
    yield age
    yield stamp


def _jobs() -> Iterator[Metric]:
    jobs = GaugeMetricFamily("opsdash_jobs", "Jobs by kind and status", labels=["kind", "status"])
    for row in Job.objects.values("kind", "status").annotate(n=Count("id")).order_by():
        jobs.add_metric([row["kind"], row["status"]], row["n"])
    yield jobs
    durations = HistogramMetricFamily("opsdash_job_duration_seconds", "Duration of finished jobs", labels=["kind"])
    finished = Job.objects.filter(finished_at__isnull=False, started_at__isnull=False).annotate(
        duration=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    )
    buckets = {f"le{b}": Count("id", filter=Q(duration__lte=timedelta(seconds=b))) for b in JOB_DURATION_BUCKETS}
    for row in finished.values("kind").annotate(n=Count("id"), total=Sum("duration"), **buckets).order_by("kind"):
        cumulative = [(str(float(b)), row[f"le{b}"]) for b in JOB_DURATION_BUCKETS] + [("+Inf", row["n"])]
        durations.add_metric([row["kind"]], cumulative, sum_value=row["total"].total_seconds())
    yield durations
