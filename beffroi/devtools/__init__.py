"""Tools for the project's maintainers (refreshing vendored files).

Nothing at run time imports them.
"""
