# Creates and seeds the benchmark's sqlite database (run once per interpreter by forkmem.py).
# Uses migrate --run-syncdb so the shop app needs no committed migrations.
import datetime
import decimal
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402

from shop.models import Category, Product  # noqa: E402

WORDS = ("oak pine maple birch cedar lamp chair desk shelf rug clock vase mirror stool bench "
         "cabinet sofa table frame basket").split()

call_command("migrate", run_syncdb=True, verbosity=0)
if not Category.objects.exists():
    cats = [Category.objects.create(name=n, slug=n.lower()) for n in
            ("Furniture", "Lighting", "Textiles", "Decor", "Garden")]
    base = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    Product.objects.bulk_create([
        Product(category=cats[i % len(cats)],
                name="%s %s %d" % (WORDS[i % len(WORDS)].title(), WORDS[(i * 7) % len(WORDS)], i),
                description="\n".join(" ".join(WORDS[(i + j * 3 + k) % len(WORDS)] for k in range(12))
                                      for j in range(4)),
                price=decimal.Decimal(i * 37 % 50000) / 100 + 1,
                stock=(i * 13) % 40,
                created=base + datetime.timedelta(hours=i * 5))
        for i in range(300)])
print("seeded %s: %d categories, %d products" % (os.environ.get("FORKMEM_DJANGO_DB"),
                                                 Category.objects.count(), Product.objects.count()))
