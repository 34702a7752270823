"""Operator actions (opsdash.actions): POST only, CSRF, the action's permission checked here on
the server for every request."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from ..actions import ACTIONS
from ..models import Job, ModuleState
from ..services.access import access_of
from ..services.audit import record_refusal, token_params
from ..services.clients import client_ip
from ..services.jobs import Busy, fail_stale_jobs, request_job, waits_for_a_worker, worker_seen_at
from .api import api_login_required, json_response


def _check(request: HttpRequest, kind: str) -> None:
    if not request.user.has_perm(ACTIONS[kind].permission):
        raise PermissionDenied("only operators run actions")


@require_POST
def module_action(request: HttpRequest, host: str, branch: str, module: str, kind: str) -> HttpResponse:
    _check(request, kind)
    module_row = get_object_or_404(
        access_of(request.user).filter(ModuleState.objects.all()), host=host, branch=branch, module=module
    )
    try:
        job = request_job(kind, host, branch, module, request.user.get_username(), client_ip(request))
    except Busy as exc:
        if request.htmx:  # base.html's htmx config swaps a 409 in like a success
            # The job in the way stays in view (the swap replaces the job area it was shown in).
            other = Job.objects.filter(host=host, branch=branch, module__in=[module, ""], status__in=Job.ACTIVE).first()
            return render(request, "opsdash/job.html#busy", {"message": str(exc), "job": other}, status=409)
        messages.error(request, f"{module_row.branch}/{module_row.module}: {exc}")
        return redirect(module_row.get_absolute_url())
    if request.htmx:
        return render(request, "opsdash/job.html#job", {"job": job}, status=202)
    return redirect(f"{module_row.get_absolute_url()}?job={job.pk}#job-area")


@require_POST
def branch_action(request: HttpRequest, host: str, branch: str, kind: str) -> HttpResponse:
    _check(request, kind)
    if not access_of(request.user).allows(branch) or not ModuleState.objects.filter(host=host, branch=branch).exists():
        raise Http404("no such branch")
    back = reverse("opsdash:module_list") + "?" + urlencode({"branch": branch})
    if request.POST.get("confirm", "").strip() != branch:
        messages.error(
            request, gettext("Type the branch name “%(branch)s” to confirm; nothing was done.") % {"branch": branch}
        )
        return redirect(back)
    try:
        job = request_job(kind, host, branch, "", request.user.get_username(), client_ip(request))
    except Busy as exc:
        messages.error(request, f"{branch}: {exc}")
        return redirect(back)
    return redirect(job.get_absolute_url())


@require_GET
@vary_on_headers("HX-Request")
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    fail_stale_jobs()
    job = get_object_or_404(access_of(request.user).filter(Job.objects.select_related("target")), pk=pk)
    template = "opsdash/job.html#job" if request.htmx else "opsdash/job.html"
    return render(request, template, {"job": job})


def job_json(request: HttpRequest, job: Job) -> dict:
    out = {
        "id": job.pk,
        "url": request.build_absolute_uri(job.api_url()),
        "page": request.build_absolute_uri(job.get_absolute_url()),
        "kind": job.kind,
        "host": job.host,
        "branch": job.branch,
        "module": job.module,
        "status": job.status,
        "progress": round(job.progress, 4),
        "progress_text": job.progress_text,
        "progress_info": job.progress_info,
        "requested_by": job.requested_by,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }
    if job.status == Job.Status.QUEUED:  # nobody may be there to run it: say so
        out["waiting_for_worker"] = waits_for_a_worker(job)
        out["worker_last_seen_at"] = worker_seen_at(job.host)
    elif job.status == Job.Status.SUCCEEDED:
        out["result"] = job.result
    elif job.status == Job.Status.FAILED:
        out["error"] = job.error
        if job.result:  # a bulk job keeps what it did before a module failed
            out["result"] = job.result
    return out


@require_POST
@api_login_required
def api_module_action(request: HttpRequest, host: str, branch: str, module: str, kind: str) -> HttpResponse:
    if not request.user.has_perm(ACTIONS[kind].permission):
        record_refusal(request)
        return json_response({"error": "only operators run actions"}, status=403)
    if not access_of(request.user).filter(ModuleState.objects.filter(host=host, branch=branch, module=module)).exists():
        return json_response({"error": "no such module"}, status=404)
    try:
        job = request_job(
            kind, host, branch, module, request.user.get_username(), client_ip(request), token_params(request)
        )
    except Busy as exc:
        return json_response({"error": str(exc)}, status=409)
    return json_response(
        {"job": {"id": job.pk, "url": request.build_absolute_uri(job.api_url()), "status": job.status}}, status=202
    )


@require_GET
@api_login_required
def api_job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    fail_stale_jobs()
    job = access_of(request.user).filter(Job.objects.filter(pk=pk)).first()
    if job is None:
        return json_response({"error": "no such job"}, status=404)
    return json_response(job_json(request, job))
