# Beffroi's image: the `beffroi` command (ingestor, API, migrations, simulators).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY beffroi beffroi
COPY devices devices
COPY ingest ingest
COPY api api
COPY simulators simulators
RUN pip install --no-cache-dir . && useradd --system --uid 10001 beffroi
USER beffroi
ENTRYPOINT ["beffroi"]
