# The sluice image: `docker build -t sluice .` at the repository root (deploy/README.md).
#
# Two stages. `build` has the C compiler: it compiles the hot path (engine/_fast/*.pyx) into the
# sluice wheel and collects a wheel of every dependency. The runtime stage installs those wheels
# and nothing else (no compiler, no network, no source tree), and runs as an unprivileged user.
# Needs BuildKit (the default builder since Docker 23; podman/buildah too) for `RUN --mount`,
# which keeps the wheels out of the image's layers.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# only what the wheel is built from (.dockerignore keeps host-built .so and .c files out too)
COPY pyproject.toml setup.py README.md ./
COPY engine ./engine
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM python:${PYTHON_VERSION}-slim
# A numeric USER, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
ARG UID=10001
RUN groupadd --system --gid ${UID} sluice \
 && useradd --system --uid ${UID} --gid sluice --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sluice
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels sluice
COPY --chmod=0755 deploy/container/sluice-admin /usr/local/bin/sluice-admin
COPY --chmod=0644 deploy/container/sluice.yaml /etc/sluice/sluice.yaml

# bytecode was compiled at install time; the root filesystem may be read-only (Kubernetes'
# readOnlyRootFilesystem), so never try to write more
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER ${UID}:${UID}
WORKDIR /
# the default config's listener; the admin API (9901) stays on the container's loopback
EXPOSE 8080
# SIGTERM drains (default --drain-timeout 30 s): give `docker stop` more than that (-t 40)
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["sluice-admin", "ready"]
ENTRYPOINT ["sluice"]
CMD ["run", "-c", "/etc/sluice/sluice.yaml"]
