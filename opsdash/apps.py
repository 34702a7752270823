from django.apps import AppConfig


class OpsdashConfig(AppConfig):
    name = "opsdash"
    verbose_name = "Mishkah store health"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Jobs reach the task queue through this function (services.jobs does not import tasks,
        # which import it). Imported here: a task module needs the app registry ready.
        from . import auth  # noqa: F401 - connects the audit of logins
        from .services import jobs
        from .tasks import enqueue_job

        jobs.use_queue(enqueue_job)
