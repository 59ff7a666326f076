# Admin registration, as a real site would have it (adds admin code to the preloaded footprint).
# Not exercised by the load client.
from django.contrib import admin

from .models import Category, Product

admin.site.register(Category)
admin.site.register(Product)
