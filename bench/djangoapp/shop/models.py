# Two models of the benchmark app: a product belongs to a category.
# Seeded by djangoapp/seed.py (5 categories, 300 products).
from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=80, unique=True)
    slug = models.SlugField(max_length=80, unique=True)

    def __str__(self):
        return self.name


class Product(models.Model):
    category = models.ForeignKey(Category, related_name="products", on_delete=models.CASCADE)
    name = models.CharField(max_length=120)
    description = models.TextField()
    price = models.DecimalField(max_digits=8, decimal_places=2)
    stock = models.PositiveIntegerField(default=0)
    created = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.name
