# App config of the benchmark shop app.
# Kept explicit so that Django 3.2 does not need to guess it.
from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    default_auto_field = "django.db.models.AutoField"
