FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY schemas ./schemas
COPY deploy ./deploy
COPY capstream ./capstream
# setup.py compiles the hot path with mypyc: a C compiler for the build only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir '.[server]' \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["capstream"]
