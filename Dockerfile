# The gateway image. Built by `docker compose up`; also runs alone with `docker run`,
# given FHIR_GATEWAY_BASE_URL (it listens on 0.0.0.0, so serve cannot derive the URL
# clients use) and a volume at /app/var for the record (else `docker rm` deletes it).

# Build the wheel in a throwaway stage so the runtime image carries no source tree.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# Unbuffered so log lines reach `docker logs` as they happen.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
# Non-root with a numeric id so orchestrators can verify runAsNonRoot. /app is its home and
# working directory, so anything the gateway writes relative to the cwd (var/) is writable.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app --create-home gateway
WORKDIR /app
USER 10001:10001
# the SQLite record and its audit journal (the default store is var/gateway.sqlite3)
VOLUME /app/var
EXPOSE 8080
# 0.0.0.0 because 127.0.0.1 inside a container is unreachable from outside it.
CMD ["fhir-gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
