# Views of the benchmark app: a templated list, a templated detail page and a paginated JSON API.
# Each request does real ORM queries on sqlite and template rendering.
from django.core.paginator import Paginator
from django.db.models import Count, Sum
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render

from .models import Category, Product


def index(request):
    categories = Category.objects.annotate(n=Count("products"), units=Sum("products__stock")).order_by("name")
    latest = Product.objects.select_related("category").order_by("-created")[:25]
    return render(request, "shop/index.html", {"categories": categories, "latest": latest})


def product_detail(request, pk):
    pk = (pk % Product.objects.count()) + 1
    product = get_object_or_404(Product.objects.select_related("category"), pk=pk)
    related = Product.objects.filter(category=product.category).exclude(pk=pk)[:8]
    return render(request, "shop/detail.html", {"product": product, "related": related})


def api_products(request):
    try:
        page_no = int(request.GET.get("page", "1"))
    except ValueError:
        page_no = 1
    paginator = Paginator(Product.objects.select_related("category").order_by("id"), 20)
    page = paginator.get_page((page_no % paginator.num_pages) + 1)
    items = [{"id": p.id, "name": p.name, "category": p.category.slug, "price": str(p.price),
              "stock": p.stock, "created": p.created.isoformat()} for p in page]
    return JsonResponse({"page": page.number, "pages": paginator.num_pages, "items": items})
