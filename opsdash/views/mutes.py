"""Acknowledge, silence and plan maintenance (operators; every one an audit entry), and the
maintenance page everyone sees."""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from eventstore import CODES, layout

from ..models import MaintenanceWindow, ModuleState, Mute
from ..services import maintenance, mutes
from ..services.access import access_of
from ..services.audit import record
from ..services.queries import branches

MUTE_PERMISSION = "opsdash.mute_alerts"


class MuteForm(forms.Form):
    kind = forms.ChoiceField(label=_("What"), choices=Mute.Kind.choices)
    scope = forms.ChoiceField(label=_("Of"), choices=Mute.Scope.choices)
    code = forms.ChoiceField(label=_("Finding code"), required=False, choices=[("", "–")])
    comment = forms.CharField(label=_("Why"), max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    until = forms.DateTimeField(
        label=_("Until (empty: until it gets worse or is lifted)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    sticky = forms.BooleanField(label=_("Keep it when things get worse"), required=False)

    def __init__(self, *args, codes: list[str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["code"].choices = [("", "–")] + [(c, c) for c in codes or []]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("scope") == Mute.Scope.CODE and not data.get("code"):
            self.add_error("code", gettext("Choose the finding code."))
        until = data.get("until")
        if until is not None and until <= timezone.now():
            self.add_error("until", gettext("Choose a time in the future."))
        return data


def _module(request: HttpRequest, host: str, branch: str, module: str) -> ModuleState:
    return get_object_or_404(
        access_of(request.user).filter(ModuleState.objects.all()), host=host, branch=branch, module=module
    )


@require_POST
@permission_required(MUTE_PERMISSION, raise_exception=True)
def module_mute(request: HttpRequest, host: str, branch: str, module: str) -> HttpResponse:
    module_row = _module(request, host, branch, module)
    form = MuteForm(request.POST, codes=module_row.codes.split())
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect(f"{module_row.get_absolute_url()}#mutes-h")
    d = form.cleaned_data
    limited = access_of(request.user).limited  # a user limited to some branches mutes a code in this branch only
    mute = mutes.give(
        d["kind"],
        d["scope"],
        module_row,
        request.user.get_username(),
        d["comment"],
        d["until"],
        d["sticky"],
        d["code"],
        code_in_branch=limited,
    )
    record(
        request,
        "acknowledge" if mute.kind == Mute.Kind.ACK else "silence",
        "ok",
        host=host,
        branch=branch,
        module=module if mute.scope == Mute.Scope.MODULE else "",
        params={
            "mute": mute.pk,
            "scope": mute.scope,
            "code": mute.code,
            "until": _iso(mute.until),
            "sticky": mute.sticky,
        },
        detail=mute.comment,
    )
    return redirect(f"{module_row.get_absolute_url()}#mutes-h")


def _may_touch(request: HttpRequest, branch: str) -> bool:
    """Whether the user may create or end what reaches ``branch`` ("": every branch, which only
    a user of every branch may)."""
    access = access_of(request.user)
    return access.allows(branch) if branch else not access.limited


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


@require_POST
@permission_required(MUTE_PERMISSION, raise_exception=True)
def mute_lift(request: HttpRequest, pk: int) -> HttpResponse:
    mute = get_object_or_404(Mute.objects.select_related("module"), pk=pk)
    if not _may_touch(request, mute.branch):
        raise Http404("no such mute")
    lifted = mutes.lift(mute, request.user.get_username())
    record(
        request,
        "lift_mute",
        "ok" if lifted else "failed",
        host=mute.host,
        branch=mute.branch,
        module=mute.module.module if mute.module_id else "",
        params={"mute": mute.pk, "kind": mute.kind, "scope": mute.scope},
        detail="" if lifted else "it had ended already",
    )
    back = mute.module.get_absolute_url() if mute.module_id else request.POST.get("next") or "/"
    return redirect(back if back.startswith("/") and not back.startswith("//") else "/")


# -- maintenance ----------------------------------------------------------------------------------


class WindowForm(forms.Form):
    host = forms.CharField(label=_("Host (empty: every host)"), required=False, max_length=255)
    branch = forms.CharField(label=_("Branch (empty: every branch)"), required=False, max_length=128)
    module = forms.CharField(label=_("Module (empty: every module)"), required=False, max_length=128)
    starts_at = forms.DateTimeField(
        label=_("Starts"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    ends_at = forms.DateTimeField(
        label=_("Ends"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    cron = forms.CharField(label=_("Or every (cron, e.g. 0 3 * * 1)"), required=False, max_length=100)
    minutes = forms.IntegerField(
        label=_("Lasting (minutes)"), required=False, min_value=1, max_value=maintenance.MAX_MINUTES
    )
    comment = forms.CharField(label=_("Why"), max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self) -> dict:
        data = super().clean()
        for key in ("branch", "module"):
            if data.get(key) and not layout.check_name(data[key]):
                self.add_error(key, gettext("Not a branch or module name."))
        cron, start, end = data.get("cron", "").strip(), data.get("starts_at"), data.get("ends_at")
        if cron:
            if not maintenance.valid_cron(cron):
                self.add_error("cron", gettext("Not a cron expression of five fields."))
            if not data.get("minutes"):
                self.add_error("minutes", gettext("Say how long each occurrence lasts."))
            if start or end:
                self.add_error("cron", gettext("Either a start and an end, or a cron expression; not both."))
        elif not (start and end and start < end):
            self.add_error("ends_at", gettext("Give a start and a later end, or a cron expression."))
        elif end <= timezone.now():
            self.add_error("ends_at", gettext("This window is over already."))
        data["cron"] = cron
        return data


@require_GET
def maintenance_list(request: HttpRequest) -> HttpResponse:
    return _maintenance_page(request, WindowForm())


def _maintenance_page(request: HttpRequest, form: WindowForm, status: int = 200) -> HttpResponse:
    access = access_of(request.user)
    now = timezone.now()
    windows = [w for w in MaintenanceWindow.objects.all()[:200] if not w.branch or access.allows(w.branch)]
    rows = [(w, maintenance.is_open(w, now), maintenance.next_start(w, now)) for w in windows]
    active = [m for m in mutes.active().select_related("module")[:200] if not m.branch or access.allows(m.branch)]
    ctx = {"rows": rows, "form": form, "mutes": active, "branches": branches(access), "codes": sorted(CODES)}
    return render(request, "opsdash/maintenance.html", ctx, status=status)


@require_POST
@permission_required(MUTE_PERMISSION, raise_exception=True)
def maintenance_create(request: HttpRequest) -> HttpResponse:
    form = WindowForm(request.POST)
    if form.is_valid() and not _may_touch(request, form.cleaned_data["branch"]):
        form.add_error("branch", gettext("Name one of your branches."))
    if not form.is_valid():
        return _maintenance_page(request, form, status=400)
    d = form.cleaned_data
    window = MaintenanceWindow.objects.create(
        host=d["host"].strip(),
        branch=d["branch"].strip(),
        module=d["module"].strip(),
        starts_at=None if d["cron"] else d["starts_at"],
        ends_at=None if d["cron"] else d["ends_at"],
        cron=d["cron"],
        minutes=d["minutes"] or 0 if d["cron"] else 0,
        comment=d["comment"],
        created_by=request.user.get_username(),
    )
    params = {"window": window.pk, "cron": window.cron, "minutes": window.minutes}
    params |= {"starts_at": _iso(window.starts_at), "ends_at": _iso(window.ends_at)}
    record(
        request,
        "maintenance",
        "ok",
        host=window.host,
        branch=window.branch,
        module=window.module,
        params=params,
        detail=window.comment,
    )
    return redirect("opsdash:maintenance_list")


@require_POST
@permission_required(MUTE_PERMISSION, raise_exception=True)
def maintenance_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    window = get_object_or_404(MaintenanceWindow, pk=pk)
    if not _may_touch(request, window.branch):
        raise Http404("no such maintenance window")
    done = MaintenanceWindow.objects.filter(pk=pk, cancelled_at__isnull=True).update(
        cancelled_at=timezone.now(), cancelled_by=request.user.get_username()
    )
    record(
        request,
        "cancel_maintenance",
        "ok" if done else "failed",
        host=window.host,
        branch=window.branch,
        module=window.module,
        params={"window": window.pk},
        detail="" if done else "cancelled already",
    )
    return redirect("opsdash:maintenance_list")
