"""Framework adapters, at the edge of the package: Flask, FastAPI/Starlette, Django, structlog.

Each module guards its framework's import and raises one ``MissingDependencyError``
naming the extra to install. (The top-level ``integrations/`` folder of the repository
holds runnable example apps; this package is the library code they use.)
"""
