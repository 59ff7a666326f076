# Django project of the fork-memory benchmark (bench/forkmem.py --workload django).
# Settings keep Django's default INSTALLED_APPS and middleware so the import footprint is realistic.
