"""The searchers' names, torch-free for the CLI's options (``studies/search.py`` implements them)."""
SEARCHERS = ("cma", "adamerging")
