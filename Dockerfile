# The audit-middleware command line, for the one-shot "setup" service of docker-compose.yml.
#
#   docker build -t audit-middleware .
#   docker run --rm -e AUDIT_OPENSEARCH_URL=http://opensearch:9200 audit-middleware setup --help
FROM python:3.12-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY audit_middleware ./audit_middleware
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /
USER nobody
ENTRYPOINT ["audit-middleware"]
CMD ["--help"]
