# Beffroi's image: the `beffroi` command (ingestor, API, migrations, simulators).
# Everything installed comes from the lock files (exact versions, hashes checked); the
# production smoke test (tests/integration/test_production.py) runs these same steps natively.
FROM python:3.11-slim-bookworm AS build
# mypyc compiles the ingestor's per-message path to C (setup.py): a compiler in this stage
# only; the runtime stage receives the built wheel.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements-build.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements-build.lock
COPY pyproject.toml setup.py README.md ./
COPY sql sql
COPY beffroi beffroi
COPY devices devices
COPY ingest ingest
COPY api api
COPY simulators simulators
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock
COPY --from=build /dist /tmp/dist
RUN pip install --no-cache-dir --no-deps /tmp/dist/*.whl && rm -rf /tmp/dist /tmp/requirements.lock \
    && useradd --system --uid 10001 --home-dir /home/beffroi --create-home beffroi
USER beffroi
WORKDIR /home/beffroi
ENTRYPOINT ["beffroi"]
