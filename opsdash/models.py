"""What the dashboard remembers: each module's current state, incidents, backups, the audit trail.

The files stay the truth about the present; these tables are the history and a fast index of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from eventstore import health


class Status(models.TextChoices):
    HEALTHY = "healthy", _("healthy")
    WARNING = "warning", _("warning")
    CRITICAL = "critical", _("critical")
    GONE = "gone", _("gone")


# Sort order "worst first" follows the store's rank (a module that is gone has no findings any more).
STATUS_RANK = {Status.GONE: 0, **health.STATUS_RANK}
# The statuses that are a problem: they open an incident and alert.
PROBLEM_STATUSES = (Status.WARNING, Status.CRITICAL)


class ModuleState(models.Model):
    """One branch/module on one host, as the last scan that changed something left it."""

    host = models.CharField(max_length=255)
    branch = models.CharField(max_length=128)
    module = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=Status.choices)
    status_rank = models.PositiveSmallIntegerField(default=0)
    findings = models.JSONField(default=list)
    codes = models.CharField(max_length=500, blank=True, default="")
    stats = models.JSONField(default=dict)
    meta_total_events = models.BigIntegerField(null=True)
    log_events = models.BigIntegerField(default=0)
    log_size = models.BigIntegerField(default=0)
    last_event_at = models.DateTimeField(null=True)
    backups_count = models.PositiveIntegerField(default=0)
    temp_files = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_changed = models.DateTimeField()
    status_since = models.DateTimeField()
    # eventstore's check state (file stamps, log summary, checkpoints): the next scan re-reads
    # only what changed, and a full read compares the log with its checkpoints.
    scan_state = models.JSONField(null=True, blank=True, editable=False)
    # When the log was last read in full (a first read, the scrub, Verify): null, never.
    verified_at = models.DateTimeField(null=True, blank=True)
    # Set once when the module is found overdue for its scrub (its alert is queued then),
    # cleared by its next read in full.
    overdue_since = models.DateTimeField(null=True, blank=True)
    # The live log's sparse offset index (eventstore.browse.OffsetIndex as JSON), kept up to date
    # by the scan: the event browser seeks to a line, a sequence or a time with it.
    event_index = models.JSONField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "branch", "module"], name="module_identity")]
        indexes = [
            # The overview's default order ("worst first"), so a late page needs no sort.
            models.Index(fields=["-status_rank", "branch", "module"], name="module_worst_first"),
            models.Index(fields=["branch", "module"]),
            models.Index(fields=["status"]),
            # The scrub's order (oldest verified first) and the overview's "Verified" column.
            models.Index(fields=["host", "verified_at"], name="module_verified"),
        ]
        ordering = ["branch", "module", "host"]
        # The roles of DESIGN.md, granted to the groups by migration 0003_roles.
        permissions = [
            ("run_actions", "Can rebuild, verify, archive backups and clean temp files"),
            ("download_backups", "Can download backups"),
            ("view_audit", "Can see the audit trail and the full history, and export them"),
            ("view_payloads", "Can see whole events, payloads included, and search them"),
            ("add_notes", "Can add notes to incidents"),
            ("mute_alerts", "Can acknowledge and silence problems and plan maintenance"),
        ]

    def __str__(self) -> str:
        return f"{self.host}:{self.branch}/{self.module}"

    def get_absolute_url(self) -> str:
        return reverse("opsdash:module_detail", kwargs=self.key)

    @property
    def key(self) -> dict[str, str]:
        return {"host": self.host, "branch": self.branch, "module": self.module}

    def api_url(self) -> str:
        return reverse("opsdash:api_module_detail", kwargs=self.key)

    @property
    def drift(self) -> bool:
        return self.meta_total_events is not None and self.meta_total_events != self.log_events


class ScanHost(models.Model):
    """The scanner heartbeat of one host: when its last pass ran and how it went.

    Kept apart from ModuleState on purpose: a pass over unchanged files writes this one row
    and nothing else, so "last scan" is known while module history stays free of no-op writes.
    """

    host = models.CharField(max_length=255, unique=True)
    data_root = models.CharField(max_length=1000)
    last_pass_at = models.DateTimeField()
    modules = models.PositiveIntegerField(default=0)
    worst_status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True, default="")
    # Seconds between the scanner's passes (null for a one-off `manage.py scan`).
    interval = models.FloatField(null=True, blank=True)
    # Set once when the host is found stale (its "stopped reporting" alert is queued then),
    # cleared by its next pass (which queues "reports again").
    stale_since = models.DateTimeField(null=True, blank=True)
    # What the last pass could not scan ({"path", "reason"}: e.g. a folder name that is not UTF-8).
    problems = models.JSONField(default=list, blank=True)
    # Bytes the scrub may still read in full (services.scrub): each pass adds its pace.
    scrub_credit = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return self.host


class IncidentQuerySet(models.QuerySet):
    def still_open(self) -> IncidentQuerySet:
        return self.filter(ended_at__isnull=True)

    def seen_by_scan(self) -> IncidentQuerySet:
        return self.filter(source=Incident.Source.SCAN)


class BranchScope(models.Model):
    """The branches a user may see (a branch manager); no row, or no branches: every branch."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="branch_scope")
    branches = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.user}: {', '.join(self.branches) or 'every branch'}"


class ApiToken(models.Model):
    """A key for the JSON API (``Authorization: Bearer <token>``), acting as its user with that
    user's role and branches. Only its sha256 is kept; ``read_only`` tokens cannot act."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, unique=True)
    digest = models.CharField(max_length=64, unique=True)  # sha256 of the token, hex
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True, default="")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user__username", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"


class WorkerHeartbeat(models.Model):
    """The last sign of life of a worker of one host's queue (the agent's, or a web process's
    embedded one): a queued job whose host has none is waiting for a worker nobody started."""

    host = models.CharField(max_length=255, unique=True)
    last_seen_at = models.DateTimeField()
    worker_id = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"worker of {self.host} seen at {self.last_seen_at:%Y-%m-%d %H:%M:%S}"


class Incident(models.Model):
    """A span of time during which a module was warning or critical."""

    class Source(models.TextChoices):
        SCAN = "scan", _("seen by the scan")
        STORE_SERVER = "store-server", _("backup left by the store server")

    class EndedHow(models.TextChoices):
        RESOLVED = "resolved", _("resolved")
        STORE_SERVER = "store_server", _("recovered by the store server")
        GONE = "gone", _("module disappeared")
        REBUILT = "rebuilt", _("rebuilt")
        ARCHIVED = "archived", _("backups archived")

    # Who ended an incident when no person did.
    BY_SCAN = "scan"
    BY_STORE_SERVER = "store server"

    module = models.ForeignKey(ModuleState, on_delete=models.CASCADE, related_name="incidents")
    opened_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_how = models.CharField(max_length=64, blank=True, default="")
    ended_by = models.CharField(max_length=150, blank=True, default="")
    severity = models.CharField(max_length=16, choices=Status.choices)
    findings = models.JSONField(default=list)
    # Space-delimited (" a b ") so that `codes__contains=" meta_corrupt "` filters on every database.
    codes = models.CharField(max_length=500, blank=True, default="")
    source = models.CharField(max_length=32, choices=Source.choices, default=Source.SCAN)
    during_maintenance = models.BooleanField(default=False)  # opened inside a maintenance window
    escalated_at = models.DateTimeField(null=True, blank=True)  # sent to the escalation route (once)
    backup = models.OneToOneField("Backup", null=True, blank=True, on_delete=models.SET_NULL, related_name="incident")

    objects = IncidentQuerySet.as_manager()

    class Meta:
        indexes = [
            # codes too: the history's finding filter (a LIKE on codes) and its per-day chart
            # read the index alone instead of fetching every incident row of the range.
            models.Index(fields=["opened_at", "codes"], name="opsdash_inc_opened_codes_idx"),
            models.Index(fields=["module", "opened_at"]),
            models.Index(fields=["ended_at"]),
        ]
        ordering = ["-opened_at", "-id"]

    def __str__(self) -> str:
        return f"{self.module} {self.severity} since {self.opened_at:%Y-%m-%d %H:%M}"

    def get_absolute_url(self) -> str:
        return reverse("opsdash:incident_detail", kwargs={"pk": self.pk})

    @property
    def is_open(self) -> bool:
        return self.ended_at is None

    @classmethod
    def open_for(cls, module_row: ModuleState, at: datetime, findings: list[dict[str, Any]], **fields: Any) -> Incident:
        """A new incident of a module from ``at``, its severity the module's status and its codes
        those of ``findings`` (unless ``fields`` say otherwise: a store-server recovery)."""
        fields.setdefault("severity", module_row.status)
        return cls.objects.create(
            module=module_row,
            opened_at=at,
            findings=findings,
            codes=codes_field({f["code"] for f in findings}),
            **fields,
        )

    def end(self, at: datetime | None, how: str, by: str) -> None:
        """End it (``at`` None: open it again, as when the store server's log says it failed)."""
        self.ended_at, self.ended_how, self.ended_by = at, how if at else "", by if at else ""
        self.save(update_fields=["ended_at", "ended_how", "ended_by"])

    @property
    def ended_how_display(self) -> str:
        """How the incident ended, in the page's language (free text recorded before is kept)."""
        return str(dict(self.EndedHow.choices).get(self.ended_how, self.ended_how))

    @property
    def code_list(self) -> list[str]:
        return self.codes.split()


def codes_field(codes: list[str] | set[str]) -> str:
    return f" {' '.join(sorted(codes))} " if codes else ""


class Backup(models.Model):
    """A backup file in a module's live folder (later also in the archive store)."""

    class State(models.TextChoices):
        LIVE = "live", _("live")
        MISSING = "missing", _("missing")
        ARCHIVED = "archived", _("archived")
        PURGED = "purged", _("purged")  # its archive copies were removed (OPSDASH_ARCHIVE_KEEP_DAYS)

    module = models.ForeignKey(ModuleState, on_delete=models.CASCADE, related_name="backups")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=32)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(null=True)
    parses = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.LIVE)
    # Where an archive job put the verified copy (state "archived"); blank before that.
    archive_path = models.CharField(max_length=1000, blank=True, default="")
    # Pinned by an operator: kept in the archive however old (a purge never removes it).
    pinned_by = models.CharField(max_length=150, blank=True, default="")
    first_seen = models.DateTimeField()
    last_changed = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["module", "name"], name="backup_identity")]
        indexes = [models.Index(fields=["created_at"]), models.Index(fields=["state"])]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.module} {self.name}"

    def get_absolute_url(self) -> str:
        return reverse("opsdash:backup_detail", kwargs={"pk": self.pk})

    def download_url(self) -> str:
        return reverse("opsdash:backup_download", kwargs={"pk": self.pk})


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete an audit entry or an incident note."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} cannot be deleted")


class AppendOnly(models.Model):
    """Rows that are written once: saving one again, updating or deleting raises AppendOnlyError
    (the model, its querysets and so the admin)."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(f"{self._meta.verbose_name_plural} cannot be deleted")


class IncidentNote(AppendOnly):
    """What an operator or an auditor wrote on an incident: who, when, the text (plain text,
    shown escaped; never rendered as markup). Append-only, and an audit entry each."""

    MAX_LENGTH = 5000

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notes")
    author = models.CharField(max_length=150)
    at = models.DateTimeField(auto_now_add=True)
    text = models.TextField(max_length=MAX_LENGTH)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"note by {self.author} on incident {self.incident_id}"


class AuditEntry(AppendOnly):
    """Who did what, when, from where, to which module, with which outcome. Append-only."""

    at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64)
    host = models.CharField(max_length=255, blank=True, default="")
    branch = models.CharField(max_length=128, blank=True, default="")
    module = models.CharField(max_length=128, blank=True, default="")
    params = models.JSONField(default=dict)
    outcome = models.CharField(max_length=32)
    detail = models.TextField(blank=True, default="")
    meta_sha256_before = models.CharField(max_length=64, blank=True, default="")
    meta_sha256_after = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["at"]),
            models.Index(fields=["actor", "at"]),
            models.Index(fields=["action", "at"]),
            models.Index(fields=["branch", "module", "at"]),
            models.Index(fields=["outcome", "at"]),
        ]
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.outcome}"


class ServerRecovery(models.Model):
    """One recovery attempt the Node server wrote to its log, read by ``manage.py ingest_logs``.

    ``fingerprint`` is eventstore.serverlog's hash of the log text, so reading a log twice
    records nothing new. ``module`` is empty when the log names a module the database does not know.
    """

    class Outcome(models.TextChoices):
        RECOVERED = "recovered", _("recovered")
        FAILED = "failed", _("failed")
        INCOMPLETE = "incomplete", _("incomplete")

    fingerprint = models.CharField(max_length=64, unique=True)
    at = models.DateTimeField(null=True, blank=True)
    host = models.CharField(max_length=255)
    branch = models.CharField(max_length=128, blank=True, default="")
    module_name = models.CharField(max_length=128, blank=True, default="")
    module = models.ForeignKey(
        ModuleState, null=True, blank=True, on_delete=models.SET_NULL, related_name="server_recoveries"
    )
    path = models.CharField(max_length=1000, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True, default="")
    reason = models.TextField(blank=True, default="")
    events = models.BigIntegerField(null=True, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    old_build = models.BooleanField(default=False)
    backup_name = models.CharField(max_length=255, blank=True, default="")
    backup = models.ForeignKey(
        Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="server_recoveries"
    )
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="server_recoveries"
    )
    source = models.CharField(max_length=1000)  # the log file read, "-" for stdin
    line = models.PositiveIntegerField()  # where the recovery starts in that log
    lines = models.JSONField(default=list)  # the first log lines of the recovery, as printed
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["at"]), models.Index(fields=["module", "at"])]
        ordering = ["-at", "-id"]
        verbose_name_plural = "server recoveries"

    def __str__(self) -> str:
        return f"{self.branch}/{self.module_name} {self.outcome} at {self.at}"


class Job(models.Model):
    """An operator's action on a module (or a whole branch), run by the host's worker.

    At most one queued or running job per module (and per branch for bulk jobs): the database
    refuses a second one, so two actions never run on the same module at once.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=32)  # an action's kind (opsdash.actions.ACTIONS)
    host = models.CharField(max_length=255)
    branch = models.CharField(max_length=128)
    module = models.CharField(max_length=128, blank=True, default="")  # blank: a branch-wide job
    target = models.ForeignKey(ModuleState, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    requested_by = models.CharField(max_length=150)
    requested_from = models.GenericIPAddressField(null=True, blank=True)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0)
    progress_text = models.CharField(max_length=200, blank=True, default="")  # English, for the API and logs
    # The same progress as data ({"unit": "bytes" | "modules", "done", "total", "now"}): pages word it
    # in their own language.
    progress_info = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    task_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["host", "branch", "module"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_job_per_module",
            )
        ]
        indexes = [models.Index(fields=["host", "status"]), models.Index(fields=["created_at"])]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.branch}/{self.module or '*'} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("opsdash:job_detail", args=[self.pk])

    @property
    def active(self) -> bool:
        return self.status in self.ACTIVE

    def api_url(self) -> str:
        return reverse("opsdash:api_job_detail", args=[self.pk])


class Alert(models.Model):
    """One alert per status change of a module (not per scan), or per host that stopped (or
    resumed) reporting: an outbox for the receivers."""

    class Event(models.TextChoices):
        PROBLEM = "problem", _("turned warning or critical")
        ESCALATED = "escalated", _("still unacknowledged")
        DIGEST = "digest", _("daily digest")
        RECOVERED = "recovered", _("recovered")
        GONE = "gone", _("disappeared")
        HOST_STALE = "host_stale", _("host stopped reporting")
        HOST_BACK = "host_back", _("host reports again")
        VERIFY_OVERDUE = "verify_overdue", _("not read in full in time")

    # Null for a host's alert (HOST_STALE, HOST_BACK): ``host`` says which.
    module = models.ForeignKey(ModuleState, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    host = models.CharField(max_length=255, blank=True, default="")
    event = models.CharField(max_length=16, choices=Event.choices)
    status = models.CharField(max_length=16)
    previous_status = models.CharField(max_length=16, blank=True, default="")
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    # Why it went to no receiver: "" (sent), "silenced", "maintenance".
    suppressed = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event} {self.module or self.host} at {self.created_at:%Y-%m-%d %H:%M}"


class AlertDelivery(models.Model):
    """One alert to one receiver, retried with backoff until delivered or out of attempts."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    receiver = models.CharField(max_length=300)  # "webhook" or "email:<address>"
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["delivered_at", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"alert {self.alert_id} to {self.receiver}: {'delivered' if self.delivered_at else f'{self.attempts} attempt(s)'}"


class BackupBlob(models.Model):
    """The bytes of an archived backup, kept in the database so that every host can serve them
    (backups are small; the archive folder stays on the store host as the first copy)."""

    backup = models.OneToOneField(Backup, on_delete=models.CASCADE, related_name="blob")
    data = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    stored_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"stored copy of backup {self.backup_id}"


class LoginFailure(models.Model):
    """A failed login (or one being tried: services.throttle reserves the row first), for
    throttling by client and by user name, kept in the database so that every web process and
    host counts the same attempts."""

    ip = models.GenericIPAddressField(null=True, blank=True)
    username = models.CharField(max_length=150)  # as typed (stripped)
    # What the throttle counts per: the IPv4 address or the IPv6 /64; the user name as
    # authentication reads it (NFKC), case-folded.
    client = models.CharField(max_length=64, blank=True, default="")
    name = models.CharField(max_length=150, blank=True, default="")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["client", "at"]), models.Index(fields=["name", "at"])]

    def __str__(self) -> str:
        return f"{self.name} from {self.client} at {self.at:%Y-%m-%d %H:%M:%S}"


class Mute(models.Model):
    """An acknowledgement or a silence of a known problem, on a module, a branch or a finding code
    (Ceph's ``health mute``, Grafana's silences). An acknowledgement says the problem is known (the
    overview shows it apart; escalation skips it); a silence also stops its alerts. Both end by
    themselves at ``until``, and, unless ``sticky``, as soon as the module's status gets worse
    than it was or a finding code appears that was not there; or when an operator lifts them."""

    class Kind(models.TextChoices):
        ACK = "ack", _("acknowledged")
        SILENCE = "silence", _("silenced")

    class Scope(models.TextChoices):
        MODULE = "module", _("a module")
        BRANCH = "branch", _("a branch")
        CODE = "code", _("a finding code")

    class EndedWhy(models.TextChoices):
        EXPIRED = "expired", _("its time ran out")
        WORSE = "worse", _("the status got worse")
        NEW_CODE = "new_code", _("a new finding appeared")
        LIFTED = "lifted", _("lifted")
        RECOVERED = "recovered", _("the module recovered")

    kind = models.CharField(max_length=16, choices=Kind.choices)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    host = models.CharField(max_length=255, blank=True, default="")
    branch = models.CharField(max_length=128, blank=True, default="")
    module = models.ForeignKey(ModuleState, null=True, blank=True, on_delete=models.CASCADE, related_name="mutes")
    code = models.CharField(max_length=64, blank=True, default="")  # CODE: the finding code (any module)
    comment = models.TextField(max_length=2000)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    until = models.DateTimeField(null=True, blank=True)  # null: until it ends by itself or is lifted
    sticky = models.BooleanField(default=False)  # True: a worse status or a new code does not end it
    # What it was given for (MODULE: that module's; BRANCH, CODE: empty, judged per module).
    status_at = models.CharField(max_length=16, blank=True, default="")
    codes_at = models.CharField(max_length=500, blank=True, default="")
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_why = models.CharField(max_length=16, choices=EndedWhy.choices, blank=True, default="")
    ended_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["ended_at", "scope"])]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} of {self.scope} {self.module or self.branch or self.code} by {self.created_by}"


class MaintenanceWindow(models.Model):
    """A planned time without alerts, for a host, a branch or a module (empty: all of them),
    one-off (``starts_at`` to ``ends_at``) or recurring (``cron``, a cron expression in
    OPSDASH_TIME_ZONE, each occurrence lasting ``minutes``). Incidents opened during one are
    marked so."""

    host = models.CharField(max_length=255, blank=True, default="")
    branch = models.CharField(max_length=128, blank=True, default="")
    module = models.CharField(max_length=128, blank=True, default="")
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    cron = models.CharField(max_length=100, blank=True, default="")
    minutes = models.PositiveIntegerField(default=0)
    comment = models.TextField(max_length=2000)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        what = self.cron or f"{self.starts_at:%Y-%m-%d %H:%M} to {self.ends_at:%Y-%m-%d %H:%M}"
        return f"maintenance {what} of {self.host or 'every host'}/{self.branch or '*'}/{self.module or '*'}"
