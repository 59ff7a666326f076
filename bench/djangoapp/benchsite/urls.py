# URL map of the benchmark site: admin (as a real site has it), two templated views, one JSON view.
# forkmem.py's client cycles through /, /product/<i>/ and /api/products/?page=<i>.
from django.contrib import admin
from django.urls import path

from shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.index, name="index"),
    path("product/<int:pk>/", views.product_detail, name="product"),
    path("api/products/", views.api_products, name="api-products"),
]
