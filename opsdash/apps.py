from django.apps import AppConfig


class OpsdashConfig(AppConfig):
    name = "opsdash"
    verbose_name = "Mishkah store health"
    default_auto_field = "django.db.models.BigAutoField"
