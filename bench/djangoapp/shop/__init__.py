# The benchmark's one Django app: categories and products on sqlite.
# Views render templates and JSON the way a small catalogue site would.
