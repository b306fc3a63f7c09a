"""Tools for the project's maintainers (refreshing vendored files); nothing at run time imports them."""
